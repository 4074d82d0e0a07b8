"""NVIDIA's PyTorch network pickles (stylegan2-ada-pytorch and StyleGAN3 snapshots), read safely.

Such a file is a plain pickle of a dict (`G`, `D`, `G_ema`, ...). Every network in it is a
`torch_utils.persistence` object: a call `_reconstruct_persistent_obj(meta)` whose `meta` holds
the class name, the module's `__dict__` and the *whole Python source* of the module defining
the class, which NVIDIA's loader exec()s. Tensors go through torch's storage reduction, whose
bytes are a second, nested (legacy `torch.save`) pickle that torch would unpickle without
restriction. So a checkpoint can run code in two places.

This loader runs neither: the outer unpickler resolves only the handful of globals the format
names, each to a harmless function of our own (the persistent-object call just records the
meta dict; `module_src` is never looked at), and the nested storage streams are parsed by our
own reader, whose unpickler admits only `torch.*Storage` names as dtype markers. What comes
out is plain data: a tree of TorchModule (class name, init kwargs, numpy parameters, buffers,
children, plain attributes). Nothing from the file is imported, called or exec'd, and nothing
of torch is needed.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import pickletools
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bakery.images.pickle_loader import CheckpointError, EasyDict, UnsafePickleError, _numpy_globals

PERSISTENT_GLOBAL = ("torch_utils.persistence", "_reconstruct_persistent_obj")
TF1_NETWORK_GLOBAL = ("dnnlib.tflib.network", "Network")
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization's MAGIC_NUMBER
LEGACY_PROTOCOL = 1001
SNIFF_BYTES = 8 << 20  # how much of a file is_torch_pickle looks at

# torch.<Name>Storage → numpy dtype (little-endian as stored; byte order fixed from the sys info)
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}
# torch.nn.Module bookkeeping in a state dict, not NVIDIA's attributes
_TORCH_KEYS = {"training"}


class UnsafeTorchPickleError(UnsafePickleError, CheckpointError):
    """The file names something a network snapshot has no business naming; nothing was run."""


@dataclass
class TorchModule:
    """One torch.nn.Module of the checkpoint as plain data."""

    class_name: str  # 'Generator', 'SynthesisLayer', 'SynthesisInput', ...
    init_kwargs: dict  # the constructor's keyword arguments (persistence's _init_kwargs), plain dicts
    params: dict[str, np.ndarray]  # the module's own _parameters, float32
    buffers: dict[str, np.ndarray | None]  # its own _buffers (floats as float32; None if registered as None)
    children: dict[str, "TorchModule"] = field(default_factory=dict)  # _modules, in order
    attrs: dict = field(default_factory=dict)  # NVIDIA's plain attributes (z_dim, w_dim, up, ...)

    def child(self, name: str) -> "TorchModule":
        if name not in self.children:
            raise CheckpointError(f"{self.class_name} has no sub-module {name!r} "
                                  f"(it has: {', '.join(self.children) or 'none'})")
        return self.children[name]

    def named_tensors(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Every parameter and buffer below this module, keyed as in torch's state_dict()."""
        out = {f"{prefix}{k}": v for k, v in {**self.params, **self.buffers}.items() if v is not None}
        for name, sub in self.children.items():
            out.update(sub.named_tensors(f"{prefix}{name}."))
        return out


@dataclass
class TorchCheckpoint:
    path: Path
    sha256: str
    networks: dict[str, TorchModule]  # 'G', 'D', 'G_ema', ...: the top-level entries that are modules

    def generator(self) -> TorchModule:
        """G_ema (the moving average NVIDIA samples from), else G."""
        for key in ("G_ema", "G"):
            if key in self.networks:
                return self.networks[key]
        raise CheckpointError(f"{self.path}: the snapshot holds no generator: neither 'G_ema' nor 'G' "
                              f"(networks found: {', '.join(self.networks) or 'none'})")


# -- the nested storage streams -------------------------------------------------------------

@dataclass
class _StorageType:
    name: str


class _Storage:
    """One storage's elements, filled once the stream's raw data section has been read."""

    def __init__(self, kind: _StorageType, numel: int):
        self.kind, self.numel = kind, numel
        self.array: np.ndarray | None = None


class _StorageUnpickler(pickle.Unpickler):
    """The pickles inside a legacy torch.save stream: storage classes and 'storage' ids only."""

    def __init__(self, file, source: str, storages: dict):
        super().__init__(file)
        self.source, self.storages = source, storages

    def find_class(self, module: str, name: str):
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafeTorchPickleError(
            f"{self.source}: refusing to load: the tensor data names {module}.{name}, which is not a "
            "torch storage type (nothing from the file was run)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise UnsafeTorchPickleError(f"{self.source}: refusing to load: unexpected persistent id "
                                         f"{str(pid)[:80]!r} in the tensor data")
        _, kind, key, _location, numel = pid[:5]
        if not isinstance(kind, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"{self.source}: malformed storage id {str(pid)[:80]!r}")
        if len(pid) == 6 and pid[5] is not None:
            raise CheckpointError(f"{self.source}: storage views (torch < 1.0 files) are not supported")
        if key not in self.storages:
            self.storages[key] = _Storage(kind, numel)
        return self.storages[key]


def _storage_dtype(kind: _StorageType, little_endian: bool) -> np.dtype:
    code = STORAGE_DTYPES[kind.name]
    if code == "bf16":
        code = "u2"  # read the raw bits; widened to float32 below
    return np.dtype(code).newbyteorder("<" if little_endian else ">")


def load_storage_bytes(data: bytes, source: str) -> _Storage:
    """torch.storage._load_from_bytes without torch: parse the legacy torch.save stream.

    Five pickles (magic number, protocol version, sys info, the storage as a persistent id,
    the list of storage keys), then per key an int64 element count and the raw elements.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"{source}: tensor data is {type(data).__name__}, not bytes")
    f, storages = io.BytesIO(data), {}

    def next_pickle():
        return _StorageUnpickler(f, source, storages).load()

    try:
        if next_pickle() != LEGACY_MAGIC or next_pickle() != LEGACY_PROTOCOL:
            raise CheckpointError(f"{source}: tensor data is not a legacy torch.save stream (bad magic number)")
        sys_info = next_pickle()
        little_endian = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
        root, keys = next_pickle(), next_pickle()
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{source}: unreadable tensor data ({type(exc).__name__}: {exc})") from None
    if not isinstance(root, _Storage) or not isinstance(keys, list) or set(keys) != set(storages):
        raise CheckpointError(f"{source}: tensor data does not hold exactly the storages it lists")
    for key in keys:
        storage = storages[key]
        dtype = _storage_dtype(storage.kind, little_endian)
        header = f.read(8)
        count = int.from_bytes(header, "little" if little_endian else "big", signed=True) if len(header) == 8 else -1
        raw = f.read(max(count, 0) * dtype.itemsize)
        if count != storage.numel or len(raw) != count * dtype.itemsize:
            raise CheckpointError(f"{source}: tensor data is truncated or its sizes disagree "
                                  f"(storage of {storage.numel} elements, header says {count})")
        array = np.frombuffer(raw, dtype)
        if STORAGE_DTYPES[storage.kind.name] == "bf16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        storage.array = array.astype(array.dtype.newbyteorder("="))
    return root


# -- the outer pickle -------------------------------------------------------------------------

class _Persistent:
    """What `_reconstruct_persistent_obj(meta)` stands for here: the meta dict, nothing run."""

    def __init__(self, meta):
        self.meta = meta


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None, *, source: str) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2 as a bounds-checked numpy view (copied)."""
    if not isinstance(storage, _Storage) or storage.array is None:
        raise CheckpointError(f"{source}: a tensor's data is not a storage")
    if not (isinstance(storage_offset, int) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(isinstance(v, int) and v >= 0 for v in (storage_offset, *size, *stride))):
        raise CheckpointError(f"{source}: malformed tensor layout (offset {storage_offset!r}, size {size!r}, "
                              f"stride {stride!r})")
    array = storage.array
    if 0 not in size:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= array.size:
            raise CheckpointError(f"{source}: tensor of size {list(size)} reaches past its storage "
                                  f"({array.size} elements)")
    elif storage_offset > array.size:
        raise CheckpointError(f"{source}: tensor offset {storage_offset} past its storage")
    item = array.itemsize
    view = np.lib.stride_tricks.as_strided(array[storage_offset:], shape=size,
                                           strides=tuple(s * item for s in stride), writeable=False)
    return np.array(view)


def _encode_latin1(text, encoding="latin1"):
    if not isinstance(text, str) or encoding != "latin1":
        raise CheckpointError(f"unexpected _codecs.encode({type(text).__name__}, {encoding!r}) in the pickle")
    return text.encode("latin1")


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None, state=None):
    return data


class _OuterUnpickler(pickle.Unpickler):
    """Resolves exactly the globals of NVIDIA's PyTorch snapshots, each to a harmless stand-in."""

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source
        allowed = dict(_numpy_globals())
        allowed.update({
            PERSISTENT_GLOBAL: _Persistent,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
            ("torch.storage", "_load_from_bytes"): self._load_from_bytes,
            ("collections", "OrderedDict"): OrderedDict,
            ("dnnlib.util", "EasyDict"): EasyDict,
            ("dnnlib", "EasyDict"): EasyDict,
            ("builtins", "set"): set,  # protocol ≤ 3 pickles a set as builtins.set(list)
            ("__builtin__", "set"): set,
            ("_codecs", "encode"): _encode_latin1,  # protocol 2 pickles bytes as encode(str, 'latin1')
        })
        self.allowed = allowed

    def _rebuild_tensor(self, *args):
        return _rebuild_tensor(*args, source=self.source)

    def _load_from_bytes(self, data):
        return load_storage_bytes(data, self.source)

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafeTorchPickleError(
                f"{self.source}: refusing to load: the pickle references {module}.{name}, which is not part "
                "of an NVIDIA PyTorch network snapshot (nothing from the file was run)") from None

    def persistent_load(self, pid):
        raise UnsafeTorchPickleError(f"{self.source}: refusing to load: the outer pickle uses persistent IDs")


# -- plain data out of the recorded tree ------------------------------------------------------

def _plain(value, where: str, source: str):
    """Pickled attribute values → plain Python/numpy data (EasyDict → dict, numpy scalar → number)."""
    if isinstance(value, _Persistent):
        raise CheckpointError(f"{source}: {where}: a module where plain data was expected")
    if isinstance(value, dict):
        return {k: _plain(v, f"{where}.{k}", source) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        items = [_plain(v, where, source) for v in value]
        return type(value)(items) if not isinstance(value, list) else items
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tensors(table, kind: str, where: str, source: str) -> dict:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise CheckpointError(f"{source}: {where}.{kind} is a {type(table).__name__}, not a dict")
    out = {}
    for name, value in table.items():
        if value is None and kind == "_buffers":
            out[name] = None
            continue
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{source}: {where}.{name} is a {type(value).__name__}, not a tensor")
        if value.dtype.kind == "f" or kind == "_parameters":
            value = value.astype(np.float32, copy=False)
        out[name] = value
    return out


def _module(record: _Persistent, where: str, source: str, active: set) -> TorchModule:
    if id(record) in active:
        raise CheckpointError(f"{source}: {where}: the module tree contains itself")
    meta = record.meta
    if not (isinstance(meta, dict) and meta.get("type") == "class" and isinstance(meta.get("class_name"), str)
            and isinstance(meta.get("state"), dict)):
        raise CheckpointError(f"{source}: {where}: not a persistent network class "
                              "(expected meta type 'class' with class_name and state)")
    state = meta["state"]
    modules = state.get("_modules") or {}
    if not isinstance(modules, dict):
        raise CheckpointError(f"{source}: {where}._modules is not a dict")
    active.add(id(record))
    children = {}
    for name, sub in modules.items():
        if sub is None:
            continue
        if not isinstance(sub, _Persistent):
            raise CheckpointError(f"{source}: {where}.{name} is a {type(sub).__name__}, not a network module")
        children[name] = _module(sub, f"{where}.{name}", source, active)
    active.discard(id(record))
    attrs = {k: _plain(v, f"{where}.{k}", source) for k, v in state.items()
             if not k.startswith("_") and k not in _TORCH_KEYS}
    init_kwargs = _plain(state.get("_init_kwargs") or {}, f"{where}._init_kwargs", source)
    return TorchModule(class_name=meta["class_name"], init_kwargs=dict(init_kwargs),
                       params=_tensors(state.get("_parameters"), "_parameters", where, source),
                       buffers=_tensors(state.get("_buffers"), "_buffers", where, source),
                       children=children, attrs=attrs)


def load_torch_pickle(path: Path | str) -> TorchCheckpoint:
    """A stylegan2-ada-pytorch / StyleGAN3 snapshot → its networks as plain data."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror})") from None
    try:
        top = _OuterUnpickler(io.BytesIO(data), str(path)).load()
    except CheckpointError:
        raise
    except Exception as exc:  # truncated file, not a pickle, malformed arguments, ...
        raise CheckpointError(f"{path}: not a readable PyTorch network pickle "
                              f"({type(exc).__name__}: {exc})") from None
    if not isinstance(top, dict):
        raise CheckpointError(f"{path}: expected a snapshot dict (G, D, G_ema, ...), got {type(top).__name__}")
    networks = {str(k): _module(v, str(k), str(path), set()) for k, v in top.items() if isinstance(v, _Persistent)}
    if not networks:
        raise CheckpointError(f"{path}: the snapshot dict holds no network (keys: {', '.join(map(str, top))})")
    return TorchCheckpoint(path=path, sha256=hashlib.sha256(data).hexdigest(), networks=networks)


def _first_network_global(prefix: bytes) -> tuple[str, str] | None:
    """The first global naming a network class (torch persistence or TF1 Network) in a pickle prefix."""
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(io.BytesIO(prefix)):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(arg)
                del strings[:-2]
            elif op.name in ("GLOBAL", "STACK_GLOBAL"):
                pair = tuple(arg.split(" ", 1)) if op.name == "GLOBAL" else tuple(strings[-2:])
                if pair in (PERSISTENT_GLOBAL, TF1_NETWORK_GLOBAL):
                    return pair
    except Exception:  # the prefix ends mid-opcode, or it is no pickle at all
        return None
    return None


def is_torch_pickle(path: Path | str) -> bool:
    """Cheap sniff: does the pickle's first network object come from torch_utils.persistence?"""
    try:
        with open(path, "rb") as fh:
            prefix = fh.read(SNIFF_BYTES)
    except OSError:
        return False
    return _first_network_global(prefix) == PERSISTENT_GLOBAL
