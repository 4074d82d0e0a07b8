"""What both checkpoint loaders share to read a pickle that may have been crafted against them.

A network pickle is hostile input: the file chooses every opcode, every memo index, every
global it names and every argument those globals get. The loaders (pickle_loader for TF1,
torch_pickle for PyTorch snapshots) therefore never hand the file anything that could act:

1. `scan_pickle` walks the opcodes once *before* anything is unpickled (reading, never
   executing, like `pickletools.genops`) and refuses what no checkpoint needs and what would
   make the C unpickler itself allocate or spin: memo indices past the next free slot (CPython
   preallocates the memo to the index), declared lengths past the end of the file, huge
   integers, out-of-band buffers, class-instantiating opcodes, and tuples whose shared
   sub-tuples expand to more than MAX_TUPLE_NODES items (hashing a dict key like that
   takes 2**depth steps). It also lists the globals the file names, in order.
2. Every global a checkpoint legitimately names resolves to a stand-in of our own, never to
   numpy's constructors: `numpy.dtype` to a DtypeSpec that admits only bool/int/uint/float
   types of standard sizes in the plain state numpy writes, `_reconstruct` to an ArraySpec
   whose BUILD checks version, shape, dtype and the exact byte length and then builds the
   array with `np.frombuffer(...).reshape(...)`: a read-only view of the immutable bytes
   object the unpickler made for that array alone (copied if the file gave a mutable
   bytearray, swapped to native byte order if need be), `scalar` to an exact-length read,
   and `numpy.ndarray` to an inert name that cannot be called. A spec left without its BUILD
   is an error, and so is using a dtype before it was built.
3. `PlainCopier` turns what the unpickler made into plain data without recursion: every
   object is copied once (a shared sub-object stays shared), nesting deeper than MAX_DEPTH,
   self-containing structures and data whose tree expands to more than MAX_PLAIN_NODES
   values are errors, so no later walk over the data (comparison, repr) can explode.
4. A LoadSession charges every array the load materialises against
   MATERIALISE_FACTOR × file size + MATERIALISE_SLACK bytes.
5. `describe` quotes file content in messages, bounded in depth, items and length.

The limits are far above what NVIDIA's checkpoints need (docs/images.md, "Threat model").
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import reprlib
import struct

import numpy as np

from bakery.errors import BakeryError

# -- limits (the real checkpoints' needs in parentheses) ------------------------------------
MAX_TUPLE_NODES = 10_000  # values a tuple may expand to through shared sub-tuples (≤ 20)
MAX_PLAIN_NODES = 2_000_000  # values the plain data of one checkpoint expands to (fixtures: ≤ 2,200)
MAX_DEPTH = 100  # nesting of containers in the plain data (≤ 30: 5 module levels × 5, plus kwargs)
MAX_NDIM = 8  # array / tensor dimensions (≤ 4)
MAX_INT_BYTES = 64  # LONG1 / LONG4 integers (≤ 10 bytes: torch's magic number)
MAX_LINE = 4096  # text-protocol arguments (GLOBAL names, INT, FLOAT, ...) (≤ 60)
MAX_KEY_CHARS = 1000  # a dict key (attribute / option / variable name) (≤ 60)
MATERIALISE_FACTOR = 3  # arrays built ≤ this × the file size ... (≤ 2: storages + tensor copies)
MATERIALISE_SLACK = 64 << 20  # ... plus this many bytes
DTYPE_CODES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})
DESCRIBE_CHARS = 60  # file content quoted in a message


class CheckpointError(BakeryError):
    """The file is not a usable NVIDIA network pickle (wrong shape, missing pieces, ...)."""


class UnsafePickleError(CheckpointError):
    """The pickle asks for something a network checkpoint has no business asking for."""


# -- quoting file content -------------------------------------------------------------------

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxtuple, _repr.maxlist, _repr.maxdict = 2, 4, 4, 3
_repr.maxset = _repr.maxfrozenset = _repr.maxdeque = _repr.maxarray = 4
_repr.maxstring, _repr.maxlong, _repr.maxother = 40, 40, 40


def cut(text: str, limit: int = 80) -> str:
    """A name from the file (module, class, key) for a message: one line, at most `limit` characters."""
    text = text if isinstance(text, str) else str(text)
    return repr(text[:limit])[1:-1] + ("…" if len(text) > limit else "")


def describe(value, limit: int = DESCRIBE_CHARS) -> str:
    """A short repr of a value from the file: bounded depth, items and length, whatever it holds."""
    try:
        text = _repr.repr(value)
    except Exception:  # a value whose repr fails says what it is instead
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 1] + "…"


# -- the opcode scan --------------------------------------------------------------------------

_ARG_FIXED, _ARG_LINE, _ARG_LINES2, _ARG_LEN = 1, 2, 3, 4
_ARG = [None] * 256  # per opcode byte: (kind, size) of its argument, None for no argument
for _op in pickletools.opcodes:
    _c = ord(_op.code)
    if _op.arg is None:
        continue
    _n = _op.arg.n
    if _n >= 0:
        _ARG[_c] = (_ARG_FIXED, _n)
    elif _n == pickletools.UP_TO_NEWLINE:
        _ARG[_c] = (_ARG_LINES2 if _op.arg.name == "stringnl_noescape_pair" else _ARG_LINE, 0)
    else:
        _ARG[_c] = (_ARG_LEN, {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
                               pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}[_n])
del _op, _c, _n

# opcodes that push one new value and consume nothing (their argument, if any, is skipped)
_PUSH1 = {ord(c) for c in "IJKMLSTUBCNVFG])}\x88\x89\x8a\x8b\x8e\x96\x8f"}
_FIXED_PUSH = {0x4B: 1, 0x4D: 2, 0x4A: 4, 0x47: 8, 0x29: 0, 0x7D: 0, 0x5D: 0, 0x4E: 0, 0x88: 0, 0x89: 0,
               0x8F: 0}  # BININT1, BININT2, BININT, BINFLOAT, EMPTY_TUPLE/DICT/LIST, NONE, NEWTRUE/FALSE, EMPTY_SET
_FIXED_PUSH_STEP = [_FIXED_PUSH.get(_c, -1) for _c in range(256)]
_STRINGS = {ord(c) for c in "X\x8c\x8dV"}  # unicode strings: kept, STACK_GLOBAL reads them
_REFUSED = {ord("i"): "INST", ord("o"): "OBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
            0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER"}
_u32 = struct.Struct("<I").unpack_from
_u64 = struct.Struct("<Q").unpack_from


class ScanResult:
    """What the scan learnt: the globals named (in order of first use) and where the pickle ends."""

    def __init__(self, globals_: list[tuple[str, str]], end: int, protocol: int):
        self.globals, self.end, self.protocol = globals_, end, protocol


def scan_pickle(data: bytes, source: str, start: int = 0, persistent_ids: bool = False,
                kind: str = "network pickle") -> ScanResult:
    """Walk the opcodes of the pickle at data[start:] without executing any; refuse what no
    checkpoint needs. Simulates the stack only as far as the limits need (a value's size).
    `kind` names the file in messages ("not a readable <kind>")."""
    try:
        return _scan(data, source, start, persistent_ids)
    except _Unreadable as exc:
        raise CheckpointError(f"{source}: not a readable {kind} ({exc})") from None
    except CheckpointError:
        raise
    except (IndexError, KeyError, struct.error, ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{source}: not a readable {kind} (malformed or truncated opcode stream)") from None


class _Unreadable(Exception):
    """The opcode stream is broken; scan_pickle words the message."""


def _refuse(source: str, what: str) -> CheckpointError:
    return UnsafePickleError(f"{source}: refusing to load: {what} (nothing from the file was run)")


def _scan(data: bytes, source: str, pos: int, persistent_ids: bool) -> ScanResult:  # noqa: C901 (one loop, kept flat for speed)
    # The branches come in order of how often NVIDIA's pickles use them (memo puts and gets,
    # small ints, tuples: 85 % of the opcodes), each as few steps as it can be: this loop is
    # what a load pays per opcode before unpickling (a few thousand in a TF1 checkpoint).
    n = len(data)
    stack: list = []  # per stack slot: its size in values (int) or, for a string, the string
    marks: list[int] = []
    memo: list = []  # the memo as a list: a pickler numbers its entries 0, 1, 2, ...
    remember = memo.append
    found: list[tuple[str, str]] = []
    protocol = 0
    push, pop = stack.append, stack.pop
    fixed, u32 = _FIXED_PUSH_STEP, _u32
    while True:
        try:
            c = data[pos]
        except IndexError:
            raise _Unreadable("it ends without a STOP opcode: truncated?") from None
        pos += 1
        if c == 0x72:  # LONG_BINPUT
            idx = u32(data, pos)[0]
            pos += 4
            if idx == len(memo):
                remember(stack[-1])
            elif idx < len(memo):
                memo[idx] = stack[-1]
            else:
                raise _memo_error(source, idx, len(memo))
        elif c == 0x94:  # MEMOIZE
            remember(stack[-1])
        elif c == 0x68:  # BINGET
            push(memo[data[pos]])
            pos += 1
        elif c == 0x4B:  # BININT1
            push(1)
            pos += 1
        elif c == 0x71:  # BINPUT
            idx = data[pos]
            pos += 1
            if idx == len(memo):
                remember(stack[-1])
            elif idx < len(memo):
                memo[idx] = stack[-1]
            else:
                raise _memo_error(source, idx, len(memo))
        elif c == 0x86:  # TUPLE2
            b = pop()
            a = stack[-1]
            size = (a if a.__class__ is int else 1) + (b if b.__class__ is int else 1) + 1
            if size > MAX_TUPLE_NODES:
                raise _tuple_error(source, size)
            stack[-1] = size
        elif c == 0x28:  # MARK
            marks.append(len(stack))
        elif c == 0x74 or c == 0x91:  # TUPLE, FROZENSET: hashable, so their size is what hashing walks
            k = marks.pop()
            size = 1
            for item in stack[k:]:
                size += item if item.__class__ is int else 1
            del stack[k:]
            if size > MAX_TUPLE_NODES:
                raise _tuple_error(source, size)
            push(size)
        elif c == 0x58 or c == 0x8C:  # BINUNICODE, SHORT_BINUNICODE: kept, STACK_GLOBAL reads them
            if c == 0x8C:
                length = data[pos]
                pos += 1
            else:
                length = u32(data, pos)[0]
                pos += 4
            end = pos + length
            if end > n:
                raise _length_error(source, length, n - pos)
            push(data[pos:end].decode("utf-8", "surrogatepass"))
            pos = end
        elif c == 0x85:  # TUPLE1
            item = stack[-1]
            if item.__class__ is int:
                if item >= MAX_TUPLE_NODES:
                    raise _tuple_error(source, item + 1)
                stack[-1] = item + 1
            else:
                stack[-1] = 2
        elif c == 0x52 or c == 0x81:  # REDUCE, NEWOBJ: callable/class and arguments → one value
            pop()
            stack[-1] = 1
        elif c == 0x62 or c == 0x61:  # BUILD, APPEND
            pop()
        elif c == 0x87:  # TUPLE3
            if len(stack) < 3:
                raise IndexError
            size = 1
            for item in stack[-3:]:
                size += item if item.__class__ is int else 1
            del stack[-3:]
            if size > MAX_TUPLE_NODES:
                raise _tuple_error(source, size)
            push(size)
        elif c == 0x6A:  # LONG_BINGET
            push(memo[u32(data, pos)[0]])
            pos += 4
        elif c == 0x42 or c == 0x43:  # BINBYTES, SHORT_BINBYTES
            if c == 0x43:
                length = data[pos]
                pos += 1
            else:
                length = u32(data, pos)[0]
                pos += 4
            end = pos + length
            if end > n:
                raise _length_error(source, length, n - pos)
            push(1)
            pos = end
        elif fixed[c] >= 0:  # EMPTY_TUPLE, NEWFALSE, BININT, ...: one new value
            pos += fixed[c]
            push(1)
        elif c == 0x75 or c == 0x65 or c == 0x90 or c == 0x31:  # SETITEMS, APPENDS, ADDITEMS, POP_MARK
            del stack[marks.pop():]
        elif c == 0x73:  # SETITEM
            del stack[-2:]
        elif c == 0x93:  # STACK_GLOBAL
            name, module = pop(), pop()
            if not (isinstance(module, str) and isinstance(name, str)):
                raise _Unreadable("STACK_GLOBAL without names")
            if (module, name) not in found:
                found.append((module, name))
            push(1)
        elif c == 0x32:  # DUP
            push(stack[-1])
        elif c == 0x30:  # POP (of the topmost mark if the stack is at it, as CPython does)
            if marks and marks[-1] == len(stack):
                marks.pop()
            else:
                pop()
        elif c in _PUSH1:
            kind = _ARG[c]
            if kind is not None:
                pos = _skip_arg(data, pos, c, kind, source)
            push(1)
        elif c == 0x95:  # FRAME: a length, then opcodes as usual
            if _u64(data, pos)[0] > n - pos - 8:
                raise _length_error(source, _u64(data, pos)[0], n - pos - 8)
            pos += 8
        elif c == 0x80:  # PROTO
            protocol = data[pos]
            if protocol > pickletools.pickle.HIGHEST_PROTOCOL:
                raise _Unreadable(f"unknown protocol {protocol}")
            pos += 1
        elif c == 0x63:  # GLOBAL module\nname\n
            end1 = data.index(b"\n", pos, pos + MAX_LINE)
            end2 = data.index(b"\n", end1 + 1, end1 + 1 + MAX_LINE)
            pair = (data[pos:end1].decode("utf-8"), data[end1 + 1:end2].decode("utf-8"))
            if pair not in found:
                found.append(pair)
            pos = end2 + 1
            push(1)
        elif c == 0x2E:  # STOP
            return ScanResult(found, pos, protocol)
        elif c == 0x8D:  # BINUNICODE8
            start = pos
            pos = _skip_arg(data, pos, c, _ARG[c], source)
            push(data[start + 8:pos].decode("utf-8", "surrogatepass"))
        elif c == 0x67 or c == 0x70:  # GET, PUT (text)
            end = data.index(b"\n", pos, pos + MAX_LINE)
            idx = int(data[pos:end])
            pos = end + 1
            if idx < 0:
                raise _Unreadable(f"negative memo index {idx}")
            if c == 0x67:
                push(memo[idx])
            elif idx == len(memo):
                remember(stack[-1])
            elif idx < len(memo):
                memo[idx] = stack[-1]
            else:
                raise _memo_error(source, idx, len(memo))
        elif c == 0x6C or c == 0x64:  # LIST, DICT
            del stack[marks.pop():]
            push(1)
        elif c == 0x92:  # NEWOBJ_EX
            del stack[-2:]
            stack[-1] = 1
        elif c == 0x51 and persistent_ids:  # BINPERSID
            stack[-1] = 1
        elif c == 0x50 and persistent_ids:  # PERSID
            pos = data.index(b"\n", pos, pos + MAX_LINE) + 1
            push(1)
        elif c in (0x50, 0x51):
            raise _refuse(source, "the pickle uses persistent IDs")
        elif c in _REFUSED:
            raise _refuse(source, f"the pickle uses the {_REFUSED[c]} opcode, which no network checkpoint needs")
        else:
            raise _Unreadable(f"unknown opcode {c:#04x} at byte {pos - 1}")


def _skip_arg(data: bytes, pos: int, c: int, kind, source: str) -> int:
    """The position after opcode c's argument (checked: lengths inside the file, numbers small)."""
    how, size = kind
    if how == _ARG_FIXED:
        return pos + size
    if how == _ARG_LINE:
        end = data.index(b"\n", pos, pos + MAX_LINE)
        return end + 1
    length = data[pos] if size == 1 else _u32(data, pos)[0] if size == 4 else _u64(data, pos)[0]
    if c == 0x8A or c == 0x8B:  # LONG1, LONG4
        if length > MAX_INT_BYTES:
            raise _refuse(source, f"the pickle holds a {length}-byte integer")
    if c == 0x54 and length >= 1 << 31:  # BINSTRING's length is signed
        raise _length_error(source, length, len(data) - pos - size)
    end = pos + size + length
    if end > len(data):
        raise _length_error(source, length, len(data) - pos - size)
    return end


def _memo_error(source: str, idx: int, used: int) -> CheckpointError:
    return _refuse(source, f"the pickle stores memo entry {idx} while only {used} are in use "
                           "(a pickler numbers them in order)")


def _length_error(source: str, declared: int, left: int) -> CheckpointError:
    return _Unreadable(f"a value declares {declared} bytes, only {left} are left in the file: truncated or "
                       "crafted")


def _tuple_error(source: str, size: int) -> CheckpointError:
    return _refuse(source, f"a tuple in the pickle expands to more than {MAX_TUPLE_NODES} values through "
                           f"shared parts ({size})")


# -- the stand-ins for numpy's globals ------------------------------------------------------

class LoadSession:
    """One checkpoint load: its name for messages, its byte budget and the specs awaiting BUILD."""

    def __init__(self, source: str, file_size: int):
        self.source = source
        self.limit = MATERIALISE_FACTOR * file_size + MATERIALISE_SLACK
        self.used = 0
        self.specs: list = []

    def charge(self, nbytes: int, kind: str, shape) -> None:
        """Count an array of `nbytes` (a `kind` of `shape`, for the message) against the budget."""
        self.used += nbytes
        if self.used > self.limit:
            what = f"a {kind} of shape {list(shape) if isinstance(shape, tuple) else shape}"
            raise CheckpointError(f"{self.source}: refusing to load: {what} would bring the arrays built from "
                                  f"the file to {self.used >> 20} MiB, more than {MATERIALISE_FACTOR}× its size "
                                  f"+ {MATERIALISE_SLACK >> 20} MiB allow (shared data referenced many times?)")

    def error(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: {what}")

    def finish(self) -> None:
        """After load(): every dtype and array the pickle made must have been filled in by BUILD."""
        for spec in self.specs:
            if not spec.built:
                raise self.error(f"a numpy {spec.kind} in the pickle was never filled in (no BUILD)")
        self.specs = []

    # The callables the pickle's numpy globals resolve to.
    def dtype(self, obj=None, align=False, copy=True, *extra):
        if extra or not (isinstance(obj, str) and obj in DTYPE_CODES) or not (_flag(align) and _flag(copy)):
            raise UnsafePickleError(
                f"{self.source}: refusing to load: the pickle asks for numpy dtype {describe(obj)}; only numeric "
                "arrays are allowed (bool, int, uint, float of standard sizes: no object, string, void or "
                "structured dtypes)")
        spec = DtypeSpec(self, obj)
        self.specs.append(spec)
        return spec

    def reconstruct(self, cls=None, shape=None, typecode=None, *extra):
        if extra or cls is not NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            raise self.error(f"malformed numpy array header in the pickle ({describe((cls, shape, typecode))})")
        spec = ArraySpec(self)
        self.specs.append(spec)
        return spec

    def scalar(self, dtype=None, raw=None, *extra):
        if extra or not isinstance(dtype, DtypeSpec):
            raise self.error(f"malformed numpy scalar in the pickle (dtype {describe(dtype)})")
        raw = _raw_bytes(raw, self, "numpy scalar")
        item = dtype.ready().itemsize
        if len(raw) != item:
            raise self.error(f"a numpy scalar of dtype {dtype.ready()} holds {len(raw)} bytes, not {item}")
        return np.frombuffer(raw, dtype.ready())[0]


class _NdarrayName:
    """What `numpy.ndarray` resolves to: a name `_reconstruct` expects, not callable, not a class."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "numpy.ndarray"

    def __reduce__(self):  # pragma: no cover - never pickled
        raise TypeError("not picklable")


NDARRAY = _NdarrayName()


def _raw_bytes(raw, session: LoadSession, what: str) -> bytes:
    if isinstance(raw, (bytes, bytearray)):
        return raw
    if isinstance(raw, str):  # Python 2 pickles (read with encoding='latin1') hold str
        try:
            return raw.encode("latin1")
        except UnicodeEncodeError:
            pass
    raise session.error(f"a {what}'s data is a {type(raw).__name__}, not bytes")


def _flag(value) -> bool:
    return value.__class__ in (bool, int) and value in (0, 1)


class DtypeSpec:
    """numpy.dtype(code, align, copy) + BUILD(state), accepting only a plain numeric type."""

    __slots__ = ("session", "code", "dtype")
    kind = "dtype"

    def __init__(self, session: LoadSession, code: str):
        self.session, self.code, self.dtype = session, code, None

    @property
    def built(self) -> bool:
        return self.dtype is not None

    def ready(self) -> np.dtype:
        if self.dtype is None:
            raise self.session.error(f"numpy dtype {self.code!r} used before the pickle filled it in (BUILD)")
        return self.dtype

    def __setstate__(self, state):
        # numpy writes (3, byte order, None, None, None, -1, -1, 0) for a plain type
        if self.dtype is not None:
            raise self.session.error(f"numpy dtype {self.code!r} filled in twice")
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and state[1] in ("<", ">", "|", "=")
                and state[2] is None and state[3] is None and state[4] is None
                and state[5] == -1 and state[6] == -1 and state[7] == 0):
            raise UnsafePickleError(f"{self.session.source}: refusing to load: numpy dtype {self.code!r} with "
                                    f"state {describe(state)}; only plain numeric types are allowed (no fields, "
                                    "subarrays or metadata)")
        base = np.dtype(self.code)
        order = state[1]
        if order == "|" and base.itemsize > 1:
            raise self.session.error(f"numpy dtype {self.code!r} without a byte order")
        self.dtype = base if order in ("|", "=") else base.newbyteorder(order)


class ArraySpec:
    """_reconstruct(ndarray, (0,), b'b') + BUILD((1, shape, dtype, fortran, bytes)), checked; the array
    is a read-only view of the bytes (which are immutable: numpy will not make it writeable)."""

    __slots__ = ("session", "array")
    kind = "array"

    def __init__(self, session: LoadSession):
        self.session, self.array = session, None

    @property
    def built(self) -> bool:
        return self.array is not None

    def __setstate__(self, state):
        session = self.session
        if self.array is not None:
            raise session.error("a numpy array filled in twice")
        if not (state.__class__ is tuple and len(state) == 5 and state[0].__class__ is int and state[0] == 1):
            raise session.error(f"malformed numpy array state in the pickle ({describe(state)})")
        _, shape, spec, fortran, raw = state
        if not (shape.__class__ is tuple and len(shape) <= MAX_NDIM):
            raise session.error(f"a numpy array with shape {describe(shape)} (at most {MAX_NDIM} sizes ≥ 0)")
        for d in shape:  # every size an int ≥ 0 (inline: this runs once per array)
            if d.__class__ is not int or d < 0:
                raise session.error(f"a numpy array with shape {describe(shape)} (at most {MAX_NDIM} sizes ≥ 0)")
        if spec.__class__ is not DtypeSpec or not (fortran is False or _flag(fortran)):
            raise session.error(f"malformed numpy array state in the pickle (dtype {describe(spec)}, "
                                f"fortran {describe(fortran)})")
        dtype = spec.dtype if spec.dtype is not None else spec.ready()  # ready() words the error
        if raw.__class__ is not bytes:
            raw = _raw_bytes(raw, session, "numpy array")
        nbytes = math.prod(shape) * dtype.itemsize
        if len(raw) != nbytes:
            raise session.error(f"a numpy array of shape {list(shape)} and dtype {dtype} holds {len(raw)} bytes, "
                                f"not {nbytes}")
        session.charge(nbytes, "numpy array", shape)
        if raw.__class__ is not bytes:  # a bytearray (BYTEARRAY8) is mutable and may be shared: copied
            raw = bytes(raw)
        # A read-only view of the immutable bytes object the unpickler made for this array alone
        # (exactly nbytes long, checked above), as numpy's own unpickling keeps: no copy, nothing
        # else kept alive, and numpy refuses to make it writeable (its base is bytes).
        array = np.frombuffer(raw, dtype)
        array = array.reshape(shape, order="F") if fortran else array.reshape(shape)
        self.array = array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def numpy_globals(session: LoadSession) -> dict[tuple[str, str], object]:
    """The numpy names a checkpoint uses (numpy 1's numpy.core and numpy 2's numpy._core spelling)."""
    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): NDARRAY, ("numpy", "dtype"): session.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = session.reconstruct
        allowed[(module, "scalar")] = session.scalar
    return allowed


# -- plain data out of what the unpickler made ----------------------------------------------

_LEAF_CLASSES = frozenset({type(None), bool, int, float, complex, str, bytes, np.ndarray})
_KEYS = (str, int, float, bool, type(None))


class PlainCopier:
    """Copies unpickled values into plain data (dict/list/tuple/set, numbers, strings, arrays),
    iteratively, each object once; wrapper types (a Network, a persistent record) are rebuilt
    through `wrappers`: type → (its content, a function making the copy from the copied content)."""

    def __init__(self, session: LoadSession, wrappers: dict | None = None, python_scalars: bool = False):
        self.session = session
        self.wrappers = wrappers or {}
        self.python_scalars = python_scalars
        self.memo: dict[int, tuple[object, int]] = {}  # id → (copy, values its tree expands to)
        self.expanded = 0  # over every copy this load made

    def copy(self, root, where: str):
        out, size = self._copy(root, where)
        self.expanded += size
        if self.expanded > MAX_PLAIN_NODES:
            raise self._too_big(where)
        return out

    def _too_big(self, where: str) -> CheckpointError:
        return self.session.error(f"refusing to load: {where} expands to more than {MAX_PLAIN_NODES:,} values "
                                  "(the same data shared over and over?)")

    def _leaf(self, value, where: str):
        """(copy, values it counts for) for a value copied without a frame of its own: one without
        parts, an empty container, or a short tuple of such values (a TF1 (name, array) pair, a
        shape); (None, 0) for a container to walk."""
        cls = value.__class__
        if cls in _LEAF_CLASSES:
            return value, 1
        if cls is ArraySpec:
            if value.array is None:  # session.finish() refuses this before any copy; kept as a guard
                raise self.session.error(f"{where}: a numpy array in the pickle was never filled in (no BUILD)")
            return value.array, 1
        if cls is tuple and 0 < len(value) <= 4:
            items = []
            for item in value:
                item_cls = item.__class__
                if item_cls in _LEAF_CLASSES:  # the usual items (a TF1 (name, array) pair) without a call
                    items.append(item)
                elif item_cls is ArraySpec and item.array is not None:
                    items.append(item.array)
                else:
                    copied, size = self._leaf(item, where) if item_cls is not tuple else (None, 0)
                    if size != 1:
                        return None, 0
                    items.append(copied)
            return tuple(items), 1 + len(items)
        if isinstance(value, np.generic):
            if value.dtype.kind not in "biuf":
                raise self.session.error(f"{where}: a numpy scalar of dtype {value.dtype}")
            return (value.item() if self.python_scalars else value), 1
        if cls is DtypeSpec:
            return value.ready(), 1
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            if not value:  # empty: nothing to walk (torch's hook tables, empty kwargs)
                return ({} if isinstance(value, dict) else [] if cls is list else () if cls is tuple
                        else set() if isinstance(value, set) else frozenset()), 1
            return None, 0
        if cls in self.wrappers:
            return None, 0
        raise self.session.error(f"{where}: a {describe(cls.__name__, 40)} where plain data was expected")

    def _copy(self, root, where: str):  # noqa: C901 (one explicit-stack walk, leaves inlined for speed)
        memo, leaves, leaf = self.memo, _LEAF_CLASSES, self._leaf
        if root.__class__ in leaves:
            return root, 1
        value, size = leaf(root, where)
        if size:
            return value, size
        if id(root) in memo:
            return memo[id(root)]
        # a frame: [object, its items, next index, copied items, values its tree expands to]
        frames = [[root, self._items(root, where), 0, [], 1]]
        active = {id(root)}
        while frames:
            frame = frames[-1]
            items, i, out = frame[1], frame[2], frame[3]
            total = 0
            n = len(items)
            while i < n:  # the leaves in a row, without leaving this frame
                child = items[i]
                if child.__class__ in leaves:
                    out.append(child)
                    total += 1
                    i += 1
                    continue
                value, size = leaf(child, where)
                if not size:
                    break
                out.append(value)
                total += size
                i += 1
            frame[4] += total
            if i < n:
                frame[2] = i + 1
                key = id(child)
                if key in memo:
                    copied, size = memo[key]
                    out.append(copied)
                    frame[4] += size
                elif key in active:
                    raise self.session.error(f"{where}: values nest in a loop (the data contains itself)")
                elif len(frames) >= MAX_DEPTH:
                    raise self.session.error(f"{where}: data nested more than {MAX_DEPTH} levels deep")
                else:
                    active.add(key)
                    frames.append([child, self._items(child, where), 0, [], 1])
                continue
            obj = frame[0]
            copied = self._build(obj, out)
            size = frame[4]
            if size > MAX_PLAIN_NODES:
                raise self._too_big(where)
            memo[id(obj)] = (copied, size)
            active.discard(id(obj))
            frames.pop()
            if frames:
                frames[-1][3].append(copied)
                frames[-1][4] += size
        return copied, size

    def _items(self, obj, where: str) -> list:
        if isinstance(obj, dict):
            for k in obj:
                if k.__class__ is str:
                    if len(k) <= MAX_KEY_CHARS:
                        continue
                elif k.__class__ in _KEYS:
                    continue
                raise self.session.error(f"{where}: a dict key {describe(k)} (keys must be short strings or "
                                         "numbers)")
            return list(obj.values())
        if isinstance(obj, (list, tuple)):
            return list(obj)
        if isinstance(obj, (set, frozenset)):
            for k in obj:
                if k.__class__ not in _KEYS:
                    raise self.session.error(f"{where}: a set holding {describe(k)} (only strings and numbers)")
            return list(obj)
        content, _ = self.wrappers[obj.__class__]
        return [content(obj)]

    def _build(self, obj, out: list):
        if isinstance(obj, dict):
            return dict(zip(obj.keys(), out))
        if isinstance(obj, list):
            return out
        if isinstance(obj, tuple):
            return tuple(out)
        if isinstance(obj, (set, frozenset)):
            return type(obj)(out) if obj.__class__ in (set, frozenset) else set(out)
        _, rebuild = self.wrappers[obj.__class__]
        return rebuild(out[0])


# -- the unpickler both loaders build on ------------------------------------------------------

class SafeUnpickler(pickle.Unpickler):
    """Scans the whole pickle first, then unpickles it with every global resolved through
    `allowed` (names → stand-ins) and checks that every numpy spec got its BUILD."""

    what = "a network checkpoint"  # for the refusal message: "... which is not part of <what>"
    kind = "network pickle"  # for "not a readable <kind>"
    persistent_ids = False

    def __init__(self, data: bytes, source: str, session: LoadSession | None = None, *, start: int = 0,
                 encoding: str = "ASCII"):
        self.data, self.source, self.start = data, source, start
        self.owns_session = session is None  # a nested pickle's specs are checked by the outer load
        self.session = session if session is not None else LoadSession(source, len(data))
        self.allowed = self.globals()
        self.stream = io.BytesIO(data)
        self.stream.seek(start)
        super().__init__(self.stream, encoding=encoding)

    def globals(self) -> dict:
        return numpy_globals(self.session)

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"{self.source}: refusing to load: the pickle references {cut(module)}.{cut(name)}, which is not "
                f"part of {self.what} (nothing from the file was run)") from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: refusing to load: the pickle uses persistent IDs")

    def load(self):
        scan = scan_pickle(self.data, self.source, self.start, self.persistent_ids, self.kind)
        for module, name in scan.globals:  # refused here, before anything is unpickled
            self.find_class(module, name)
        value = super().load()
        if self.owns_session:
            self.session.finish()
        self.end = scan.end
        return value
