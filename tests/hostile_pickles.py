"""A corpus of hostile checkpoints, assembled opcode by opcode (no pickler involved), one per
attack class of issue 20, each wrapped as a TF1 network tuple and as a PyTorch snapshot.

Every file is a few hundred bytes (the storage-reuse one a few MiB) and is meant to be run
through `bakery generate` in a subprocess under a memory limit (tests/test_hostile_checkpoints.py).
Run this module to print the table of exit codes, peak RSS and seconds per file:

    PYTHONPATH=. python tests/hostile_pickles.py [--old-tree DIR]

(`--old-tree`: a checkout of an older bakery, e.g. `git archive 5f874cc bakery | tar -x -C DIR`,
run side by side with the same limits, for the before/after table.)
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MEMORY_LIMIT = 2_000_000 * 1024  # bytes of address space for the CLI run (ulimit -v 2000000)
TIMEOUT = 120  # seconds per run

# -- opcode assembly ------------------------------------------------------------------------

PROTO3 = b"\x80\x03"
STOP, MARK, TUPLE, TUPLE1, TUPLE2, TUPLE3 = b".", b"(", b"t", b"\x85", b"\x86", b"\x87"
EMPTY_TUPLE, EMPTY_DICT, EMPTY_LIST, NONE = b")", b"}", b"]", b"N"
NEWTRUE, NEWFALSE, REDUCE, BUILD, NEWOBJ = b"\x88", b"\x89", b"R", b"b", b"\x81"
SETITEMS, APPENDS, APPEND, LIST, POP = b"u", b"e", b"a", b"l", b"0"


def s(text: str) -> bytes:  # BINUNICODE
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def by(raw: bytes) -> bytes:  # BINBYTES
    return b"B" + struct.pack("<I", len(raw)) + raw


def i(value: int) -> bytes:  # BININT (signed 32 bit)
    return b"J" + struct.pack("<i", value)


def long(value: int) -> bytes:  # LONG1
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def g(module: str, name: str) -> bytes:  # GLOBAL
    return b"c" + f"{module}\n{name}\n".encode()


def put(idx: int) -> bytes:  # LONG_BINPUT
    return b"r" + struct.pack("<I", idx)


def get(idx: int) -> bytes:  # LONG_BINGET
    return b"j" + struct.pack("<I", idx)


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def dct(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return EMPTY_DICT + (MARK + b"".join(k + v for k, v in pairs) + SETITEMS if pairs else b"")


def lst(items: list[bytes]) -> bytes:
    return EMPTY_LIST + (MARK + b"".join(items) + APPENDS if items else b"")


def dtype(code: str, order: str = "<", fields: bytes = NONE, names: bytes = NONE, elsize: int = -1,
          align: int = -1, flags: int = 0) -> bytes:
    """numpy.dtype(code, False, True) + BUILD(state), as numpy pickles a dtype."""
    return (g("numpy", "dtype") + tup(s(code), NEWFALSE, NEWTRUE) + REDUCE
            + tup(i(3), s(order), NONE, names, fields, i(elsize), i(align), i(flags)) + BUILD)


def array(shape: tuple, dt: bytes, raw: bytes, typecode: bytes = b"b", header_shape=(0,)) -> bytes:
    """numpy.core.multiarray._reconstruct(ndarray, (0,), b'b') + BUILD((1, shape, dtype, False, raw))."""
    return (g("numpy.core.multiarray", "_reconstruct") + tup(g("numpy", "ndarray"), tup(*map(i, header_shape)),
                                                            b"C" + bytes([len(typecode)]) + typecode) + REDUCE
            + tup(i(1), tup(*map(i, shape)), dt, NEWFALSE, raw) + BUILD)


def legacy_storage(values: np.ndarray) -> bytes:
    """A legacy torch.save stream of one float32 storage (what torch.storage._load_from_bytes reads)."""
    from torch_pickle_helpers import legacy_storage_bytes

    return legacy_storage_bytes(values)


def storage(values: np.ndarray) -> bytes:
    return g("torch.storage", "_load_from_bytes") + tup(by(legacy_storage(values))) + REDUCE


def tensor(storage_ops: bytes, offset: int, size: tuple, stride: tuple) -> bytes:
    return (g("torch._utils", "_rebuild_tensor_v2")
            + tup(storage_ops, i(offset), tup(*map(i, size)), tup(*map(i, stride)), NEWFALSE,
                  g("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE) + REDUCE)


# -- the two wrappers: a TF1 (G, D, Gs) tuple and a PyTorch snapshot dict ----------------------

def tf1_network(static_kwargs: bytes = EMPTY_DICT, variables: bytes = EMPTY_LIST,
                components: bytes = EMPTY_DICT, name: str = "Gs", build: str = "G_main") -> bytes:
    state = dct([(s("version"), i(4)), (s("name"), s(name)), (s("static_kwargs"), static_kwargs),
                 (s("components"), components), (s("build_module_src"), s("")),
                 (s("build_func_name"), s(build)), (s("variables"), variables)])
    return g("dnnlib.tflib.network", "Network") + EMPTY_TUPLE + NEWOBJ + state + BUILD


def tf1_file(payload: bytes, where: str = "variables") -> bytes:
    """(G, D, Gs) with `payload` as a variable's value (or a static_kwargs value) of a StyleGAN 2 Gs
    (components synthesis and mapping, so that the file reaches the architecture's option checks)."""
    components = dct([(s("synthesis"), tf1_network(name="G_synthesis", build="G_synthesis_stylegan2")),
                      (s("mapping"), tf1_network(name="G_mapping", build="G_mapping"))])
    if where == "variables":
        gs = tf1_network(variables=lst([tup(s("w"), payload)]), components=components)
    else:
        gs = tf1_network(static_kwargs=dct([(s("x"), payload)]), components=components)
    return PROTO3 + tf1_network(name="G") + tf1_network(name="D") + gs + TUPLE3 + STOP


def torch_module(state_items: list[tuple[bytes, bytes]], class_name: str = "Generator") -> bytes:
    state = dct([(s("_parameters"), EMPTY_DICT), (s("_buffers"), EMPTY_DICT), (s("_modules"), EMPTY_DICT),
                 *state_items])
    meta = dct([(s("type"), s("class")), (s("version"), i(6)), (s("module_src"), s("")),
                (s("class_name"), s(class_name)), (s("state"), state)])
    return g("torch_utils.persistence", "_reconstruct_persistent_obj") + tup(meta) + REDUCE


def torch_file(payload: bytes) -> bytes:
    """{'G_ema': Generator whose attribute z_dim is `payload`}."""
    return PROTO3 + dct([(s("G_ema"), torch_module([(s("z_dim"), payload)]))]) + STOP


# -- the payloads -----------------------------------------------------------------------------

FAR = 1 << 40  # a field offset far past any mapped memory


def structured_heap_write() -> bytes:
    """A void dtype whose one float64 field lies 1 TiB past its 16-byte item, with the object flags
    set by BUILD (after numpy.dtype was called, so a check at the call sees none), then an array
    of it filled by BUILD from a list: numpy sets the field item by item, 8 chosen bytes at that
    offset from a heap buffer (a heap write)."""
    f8 = dtype("f8")
    fields = dct([(s("a"), tup(f8, long(FAR)))])
    return array((1,), dtype("V16", "|", fields=fields, names=tup(s("a")), elsize=16, align=1, flags=63),
                 lst([tup(b"G" + struct.pack(">d", 1.5))]))


def structured_scalar_read() -> bytes:
    """numpy.core.multiarray.scalar of a void dtype whose field lies 1 MiB past its 16-byte item:
    .item() (which the old loader's plain copy calls) reads there."""
    f8 = dtype("f8")
    fields = dct([(s("a"), tup(f8, i(1 << 20)))])
    return (g("numpy.core.multiarray", "scalar")
            + tup(dtype("V16", "|", fields=fields, names=tup(s("a")), elsize=16, align=1, flags=16),
                  by(b"A" * 16)) + REDUCE)


def ndarray_negative_offset() -> bytes:
    """numpy.ndarray(shape, dtype, buffer, offset=-4096): numpy's own constructor, called by the file."""
    return g("numpy", "ndarray") + tup(tup(i(2)), dtype("f8"), by(b"\0" * 16), i(-4096)) + REDUCE


def string_dtype_T() -> bytes:
    """An array of numpy 2's StringDType ('T'): arena pointers filled from file bytes."""
    return array((2,), dtype("T", "|"), by(b"\xff" * 32))


def object_dtype_build() -> bytes:
    """An object array ('O') via _reconstruct + BUILD with a list of elements."""
    return array((2,), dtype("O8", "|"), lst([i(1), i(2)]))


def object_array_declared_shape() -> bytes:
    """_reconstruct(ndarray, (2**28,), b'O'): an object array of a declared 2 GB shape, no data needed."""
    return (g("numpy.core.multiarray", "_reconstruct")
            + tup(g("numpy", "ndarray"), tup(i(1 << 28)), b"C\x01O") + REDUCE)


def object_array_ndarray_call() -> bytes:
    """numpy.ndarray((2**28,), 'O') called directly."""
    return g("numpy", "ndarray") + tup(tup(i(1 << 28)), s("O")) + REDUCE


def huge_memo_index() -> bytes:
    """LONG_BINPUT 0xfffffff0: CPython's unpickler grows its memo to the index (32 GB)."""
    return NONE + b"r\xf0\xff\xff\xff"


def huge_declared_length() -> bytes:
    """BINBYTES8 declaring 2**62 bytes."""
    return b"\x8e" + struct.pack("<Q", 1 << 62) + b"abc"


def stride0_tensor() -> bytes:
    """One stored float declared as a 32768×32768 tensor with stride 0 (4 GiB when copied)."""
    return tensor(storage(np.ones(1, np.float32)), 0, (1 << 15, 1 << 15), (0, 0))


def overlapping_tensor() -> bytes:
    """A 4096×4096 view with strides (1, 1) over 8191 floats: every row overlaps the next."""
    return tensor(storage(np.ones(8191, np.float32)), 0, (4096, 4096), (1, 1))


def tensor_offset_past_end() -> bytes:
    return tensor(storage(np.ones(4, np.float32)), 1 << 30, (2,), (1,))


def storage_reused(times: int = 500, floats: int = 1 << 20) -> bytes:
    """One 4 MiB storage (memoized) behind `times` tensors: each copy is another 4 MiB."""
    first = storage(np.ones(floats, np.float32)) + put(0)
    return lst([tensor(first if k == 0 else get(0), 0, (floats,), (1,)) for k in range(times)])


def bytes_reused(times: int = 500, floats: int = 1 << 20) -> bytes:
    """One 4 MiB bytes object (memoized) as the data of `times` float32 arrays."""
    first = by(b"\0" * (4 * floats)) + put(0)
    return lst([array((floats,), dtype("f4"), first if k == 0 else get(0)) for k in range(times)])


def doubling_list_dag(levels: int = 40) -> bytes:
    """L_k = [L_{k-1}, L_{k-1}]: 41 lists in the file, 2**40 as a tree."""
    ops = EMPTY_LIST + put(0) + POP
    for k in range(1, levels + 1):
        ops += MARK + get(k - 1) + get(k - 1) + LIST + put(k) + POP
    return ops + get(levels)


def doubling_tuple_key(levels: int = 64) -> bytes:
    """T_k = (T_{k-1}, T_{k-1}) used as a dict key: hashing it takes 2**64 steps."""
    ops = EMPTY_TUPLE + put(0) + POP
    for k in range(1, levels + 1):
        ops += get(k - 1) + get(k - 1) + TUPLE2 + put(k) + POP
    return ops + EMPTY_DICT + get(levels) + i(1) + b"s"


def deep_lists(depth: int = 200_000) -> bytes:
    """200,000 lists, each inside the previous one."""
    return EMPTY_LIST * depth + APPEND * (depth - 1)


def unbuilt_array() -> bytes:
    """An array spec the file never fills in (no BUILD)."""
    return (g("numpy.core.multiarray", "_reconstruct")
            + tup(g("numpy", "ndarray"), tup(i(0)), b"C\x01b") + REDUCE)


def wrong_length_array() -> bytes:
    """A 1000×1000 float64 array holding 16 bytes."""
    return array((1000, 1000), dtype("f8"), by(b"\0" * 16))


def deep_tf1_components(depth: int = 3000) -> bytes:
    """A (G, D, Gs) whose Gs nests 3,000 networks through components."""
    inner = tf1_network(name="leaf")
    for _ in range(depth):
        inner = tf1_network(components=dct([(s("c"), inner)]), name="n")
    return PROTO3 + tf1_network(name="G") + tf1_network(name="D") + inner + TUPLE3 + STOP


def deep_torch_modules(depth: int = 3000) -> bytes:
    """A snapshot whose generator nests 3,000 modules through _modules."""
    inner = torch_module([], "Leaf")
    for _ in range(depth):
        state = dct([(s("_parameters"), EMPTY_DICT), (s("_buffers"), EMPTY_DICT),
                     (s("_modules"), dct([(s("c"), inner)]))])
        meta = dct([(s("type"), s("class")), (s("class_name"), s("M")), (s("state"), state)])
        inner = g("torch_utils.persistence", "_reconstruct_persistent_obj") + tup(meta) + REDUCE
    return PROTO3 + dct([(s("G_ema"), inner)]) + STOP


@dataclass(frozen=True)
class Case:
    name: str  # attack class
    path: str  # "tf1" or "torch"
    make: object  # () -> bytes of the whole file

    @property
    def id(self) -> str:
        return f"{self.name}-{self.path}"


PAYLOADS = {  # attack class → payload placed where a value belongs
    "structured_dtype_heap_write": structured_heap_write,
    "structured_scalar_oob_read": structured_scalar_read,
    "ndarray_negative_offset": ndarray_negative_offset,
    "stringdtype_T_reconstruct": string_dtype_T,
    "object_dtype_reconstruct_build": object_dtype_build,
    "object_array_declared_shape": object_array_declared_shape,
    "object_array_ndarray_call": object_array_ndarray_call,
    "long_binput_huge_memo_index": huge_memo_index,
    "binbytes8_huge_length": huge_declared_length,
    "stride0_tensor_SxS": stride0_tensor,
    "overlapping_tensor_view": overlapping_tensor,
    "tensor_offset_past_end": tensor_offset_past_end,
    "storage_reused_500x": storage_reused,
    "bytes_reused_500x": bytes_reused,
    "doubling_list_dag": doubling_list_dag,
    "doubling_tuple_dict_key": doubling_tuple_key,
    "deep_lists_200k": deep_lists,
    "array_without_build": unbuilt_array,
    "array_wrong_byte_length": wrong_length_array,
}


def cases() -> list[Case]:
    out = []
    for name, payload in PAYLOADS.items():
        out.append(Case(name, "tf1", lambda p=payload: tf1_file(p())))
        out.append(Case(name, "torch", lambda p=payload: torch_file(p())))
    out.append(Case("doubling_list_dag_static_kwargs", "tf1", lambda: tf1_file(doubling_list_dag(), "static_kwargs")))
    out.append(Case("deep_module_tree_3000", "tf1", deep_tf1_components))
    out.append(Case("deep_module_tree_3000", "torch", deep_torch_modules))
    return out


# -- running one through the CLI ------------------------------------------------------------

@dataclass
class Outcome:
    returncode: int  # negative: killed by that signal
    stderr: str
    max_rss_mb: float
    seconds: float
    out_entries: list[str]
    timed_out: bool


# A small launcher: forks (its own memory is small, so the child's peak RSS is the CLI's, not the
# test runner's, which a fork of pytest would inherit), limits the child's address space, execs
# the CLI, kills it at the deadline, and reports wait4's figures for that child as JSON.
LAUNCHER = r"""
import json, os, resource, signal, sys, time
limit, timeout, argv = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
started = time.monotonic()
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.execv(argv[0], argv)
timed_out = False
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    if not timed_out and time.monotonic() - started > timeout:
        os.kill(pid, signal.SIGKILL)
        timed_out = True
    time.sleep(0.01)
print(json.dumps({"returncode": os.waitstatus_to_exitcode(status), "max_rss_kb": usage.ru_maxrss,
                  "seconds": time.monotonic() - started, "timed_out": timed_out}))
"""


def run_generate(model: Path, out: Path, tree: Path, timeout: float = TIMEOUT) -> Outcome:
    """`python -m bakery -q generate --model model --seeds 0 --out out` with tree's bakery, in a
    subprocess under RLIMIT_AS (ulimit -v), killed after `timeout` s; peak RSS from wait4."""
    import json

    env = {**os.environ, "PYTHONPATH": str(tree), "CUDA_VISIBLE_DEVICES": ""}
    cli = [sys.executable, "-m", "bakery", "-q", "generate", "--model", str(model), "--seeds", "0", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(MEMORY_LIMIT), str(timeout), *cli], cwd=tree,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 60)
    report = json.loads(proc.stdout)
    entries = sorted(p.name for p in out.iterdir()) if out.exists() else []
    return Outcome(report["returncode"], proc.stderr.decode("utf-8", "replace"), report["max_rss_kb"] / 1024,
                   report["seconds"], entries, report["timed_out"])


def _cell(text: str, width: int) -> str:
    text = text.replace("|", "/").replace("\n", " ⏎ ")
    return text if len(text) <= width else text[:width - 1] + "…"


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent.parent
    old = Path(argv[argv.index("--old-tree") + 1]) if "--old-tree" in argv else None
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases():
            model = Path(tmp) / f"{case.id}.pkl"
            model.write_bytes(case.make())
            result = run_generate(model, Path(tmp) / f"out-{case.id}", here)
            row = [case.name, case.path, str(model.stat().st_size), str(result.returncode),
                   f"{result.max_rss_mb:.0f}", f"{result.seconds:.2f}",
                   _cell(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "", 90)]
            if old is not None:
                before = run_generate(model, Path(tmp) / f"old-{case.id}", old, timeout=20)
                last = before.stderr.strip().splitlines()[-1] if before.stderr.strip() else ""
                row += [str(before.returncode) + (" (timeout)" if before.timed_out else ""),
                        f"{before.max_rss_mb:.0f}", f"{before.seconds:.2f}", _cell(last, 50)]
            rows.append(row)
            print(" | ".join(row), flush=True, file=sys.stderr)
    head = ["class", "path", "bytes", "exit", "RSS MB", "s", "stderr"]
    if old is not None:
        head += ["old exit", "old RSS MB", "old s", "old stderr (last line)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
