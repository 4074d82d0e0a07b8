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
import math
import pickletools
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bakery.errors import BakeryError
from bakery.images.pickle_loader import EasyDict, read_checkpoint
from bakery.images.safe_pickle import (MAX_NDIM, ArraySpec, CheckpointError, LoadSession, PlainCopier,
                                       SafeUnpickler, UnsafePickleError, cut, describe)

PERSISTENT_GLOBAL = ("torch_utils.persistence", "_reconstruct_persistent_obj")
TF1_NETWORK_GLOBAL = ("dnnlib.tflib.network", "Network")
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization's MAGIC_NUMBER
LEGACY_PROTOCOL = 1001
SNIFF_BYTES = 8 << 20  # how much of a file is_torch_pickle looks at
MAX_MODULE_DEPTH = 32  # nesting of torch modules (NVIDIA's: ≤ 5)
MAX_STORAGE_KEY = 100  # characters of a storage key (torch's: ≤ 20 digits)
MAX_NAME = 200  # characters of a module, attribute, tensor or class name (NVIDIA's: ≤ 40)

# torch.<Name>Storage → numpy dtype (little-endian as stored; byte order fixed from the sys info)
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}
# torch.nn.Module bookkeeping in a state dict, not NVIDIA's attributes
_TORCH_KEYS = {"training"}


class UnsafeTorchPickleError(UnsafePickleError):
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

@dataclass(frozen=True)
class _StorageType:
    name: str


class _Storage:
    """One storage's elements, filled once the stream's raw data section has been read."""

    def __init__(self, kind: _StorageType, numel: int):
        self.kind, self.numel = kind, numel
        self.array: np.ndarray | None = None


class _StorageUnpickler(SafeUnpickler):
    """The pickles inside a legacy torch.save stream: storage classes and 'storage' ids only."""

    what = "a torch storage type"
    kind = "tensor data stream"
    persistent_ids = True

    def __init__(self, data: bytes, source: str, session: LoadSession, storages: dict, start: int):
        self.storages = storages
        super().__init__(data, source, session, start=start)

    def globals(self) -> dict:
        return {("torch", name): _StorageType(name) for name in STORAGE_DTYPES}

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except (KeyError, TypeError):
            raise UnsafeTorchPickleError(
                f"{self.source}: refusing to load: the tensor data names {cut(module)}.{cut(name)}, which is not "
                "a torch storage type (nothing from the file was run)") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise UnsafeTorchPickleError(f"{self.source}: refusing to load: unexpected persistent id "
                                         f"{describe(pid)} in the tensor data")
        _, kind, key, _location, numel = pid[:5]
        if not (isinstance(kind, _StorageType) and numel.__class__ is int and 0 <= numel <= len(self.data)
                and isinstance(key, str) and len(key) <= MAX_STORAGE_KEY):
            raise CheckpointError(f"{self.source}: malformed storage id {describe(pid)}")
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


# What torch.save(storage, _use_new_zipfile_serialization=False) writes with pickle protocol 2, byte
# for byte but for the storage type, key, location and size: such a stream is read by this pattern
# (C speed) instead of five unpicklers. Anything else takes the general, scanned path.
_LEGACY_HEAD = re.compile(
    b"\\x80\\x02\\x8a\\x0a" + re.escape(LEGACY_MAGIC.to_bytes(10, "little")) + b"\\."
    rb"\x80\x02M\xe9\x03\."
    rb"\x80\x02}q\x00\(X\x10\x00\x00\x00protocol_versionq\x01M\xe9\x03"
    rb"X\r\x00\x00\x00little_endianq\x02(?P<le>[\x88\x89])"
    rb"X\n\x00\x00\x00type_sizesq\x03}q\x04\(X\x05\x00\x00\x00shortq\x05K\x02"
    rb"X\x03\x00\x00\x00intq\x06K\x04X\x04\x00\x00\x00longq\x07K[\x04\x08]uu\."
    rb"\x80\x02\(X\x07\x00\x00\x00storageq\x00ctorch\n(?P<kind>[A-Za-z0-9]{1,20})\nq\x01"
    rb"X(?P<klen>[\x01-\x40])\x00\x00\x00(?P<key>[0-9A-Za-z_]{1,64})q\x02"
    rb"X(?P<llen>[\x01-\x20])\x00\x00\x00(?P<loc>[0-9A-Za-z_:]{1,32})q\x03"
    rb"(?:K(?P<n1>.)|M(?P<n2>..)|J(?P<n4>....))Ntq\x04Q\."
    rb"\x80\x02\]q\x00X(?P<klen2>[\x01-\x40])\x00\x00\x00(?P<key2>[0-9A-Za-z_]{1,64})q\x01a\.",
    re.DOTALL)


def _fast_storage_head(data: bytes):
    """(storage, little_endian, end of the pickles) for a canonical stream, else None."""
    m = _LEGACY_HEAD.match(data)
    if m is None:
        return None
    key, kind = m["key"], m["kind"].decode("ascii")
    if (len(key) != m["klen"][0] or m["key2"] != key or len(m["key2"]) != m["klen2"][0]
            or len(m["loc"]) != m["llen"][0] or kind not in STORAGE_DTYPES):
        return None
    if m["n4"] is not None:
        numel = int.from_bytes(m["n4"], "little", signed=True)  # BININT is signed, BININT1/2 are not
        if numel < 0:
            return None
    else:
        numel = int.from_bytes(m["n1"] or m["n2"], "little")
    return _Storage(_StorageType(kind), numel), m["le"] == b"\x88", m.end(), key.decode("ascii")


def load_storage_bytes(data: bytes, source: str, session: LoadSession | None = None) -> _Storage:
    """torch.storage._load_from_bytes without torch: parse the legacy torch.save stream.

    Five pickles (magic number, protocol version, sys info, the storage as a persistent id,
    the list of storage keys), then per key an int64 element count and the raw elements.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise CheckpointError(f"{source}: tensor data is {type(data).__name__}, not bytes")
    data = bytes(data)
    session = session if session is not None else LoadSession(source, len(data))
    fast = _fast_storage_head(data)
    if fast is not None:
        root, little_endian, pos, key = fast
        storages, keys = {key: root}, [key]
    else:
        root, little_endian, pos, storages, keys = _scanned_storage_head(data, source, session)
    for key in keys:
        pos = _read_storage(storages[key], data, pos, little_endian, source, session)
    return root


def _scanned_storage_head(data: bytes, source: str, session: LoadSession):
    """The five pickles of a legacy stream, each scanned and then unpickled by _StorageUnpickler."""
    storages: dict[str, _Storage] = {}
    pos = 0

    def next_pickle():
        nonlocal pos
        unpickler = _StorageUnpickler(data, source, session, storages, pos)
        value = unpickler.load()
        pos = unpickler.end
        return value

    try:
        if next_pickle() != LEGACY_MAGIC or next_pickle() != LEGACY_PROTOCOL:
            raise CheckpointError(f"{source}: tensor data is not a legacy torch.save stream (bad magic number)")
        sys_info = next_pickle()
        little_endian = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
        root, keys = next_pickle(), next_pickle()
    except BakeryError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{source}: unreadable tensor data ({type(exc).__name__}: {cut(str(exc))})") from None
    if not (isinstance(root, _Storage) and isinstance(keys, list) and len(keys) == len(storages)
            and all(isinstance(k, str) and k in storages for k in keys)):
        raise CheckpointError(f"{source}: tensor data does not hold exactly the storages it lists")
    return root, little_endian, pos, storages, keys


def _read_storage(storage: _Storage, data: bytes, pos: int, little_endian: bool, source: str,
                  session: LoadSession) -> int:
    """Fill one storage from its int64 element count and raw elements at data[pos:]; the next position."""
    dtype = _storage_dtype(storage.kind, little_endian)
    header = data[pos:pos + 8]
    count = int.from_bytes(header, "little" if little_endian else "big", signed=True) if len(header) == 8 else -1
    end = pos + 8 + max(count, 0) * dtype.itemsize
    if count != storage.numel or end > len(data):
        raise CheckpointError(f"{source}: tensor data is truncated or its sizes disagree "
                              f"(storage of {storage.numel} elements, header says {count})")
    session.charge(count * dtype.itemsize, "storage", (count,))
    # A read-only view of the stream's (immutable) bytes: every tensor is copied out of it by
    # _rebuild_tensor, so the storage itself needs no copy of its own unless it must be converted.
    array = np.frombuffer(data, dtype, count, pos + 8)
    if STORAGE_DTYPES[storage.kind.name] == "bf16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    storage.array = array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))
    return end


# -- the outer pickle -------------------------------------------------------------------------

class _Persistent:
    """What `_reconstruct_persistent_obj(meta)` stands for here: the meta dict, nothing run."""

    __slots__ = ("meta",)

    def __init__(self, meta):
        self.meta = meta


def _persistent(meta) -> _Persistent:  # the global resolves to this function, never to the class
    return _Persistent(meta)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None, *, source: str, session: LoadSession) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2 as a bounds-checked copy: the elements must lie inside the
    storage without overlapping (no stride-0 broadcast of one element to a huge shape)."""
    if not isinstance(storage, _Storage) or storage.array is None:
        raise CheckpointError(f"{source}: a tensor's data is not a storage")
    if not (storage_offset.__class__ is int and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) <= MAX_NDIM
            and all(v.__class__ is int and v >= 0 for v in (storage_offset, *size, *stride))):
        raise CheckpointError(f"{source}: malformed tensor layout (offset {describe(storage_offset)}, size "
                              f"{describe(size)}, stride {describe(stride)})")
    array = storage.array
    numel = math.prod(size)
    if stride == _contiguous(size) and storage_offset + numel <= array.size:  # the usual case, same checks
        session.charge(numel * array.itemsize, "tensor", size)
        return array[storage_offset:storage_offset + numel].reshape(size).copy()
    if storage_offset > array.size:
        raise CheckpointError(f"{source}: tensor offset {storage_offset} past its storage ({array.size} elements)")
    if 0 not in size:
        reach = 0  # the farthest element offset the dimensions seen so far address
        for n, s in sorted(((n, s) for n, s in zip(size, stride) if n > 1), key=lambda d: d[1]):
            if s <= reach:  # also s == 0: one element repeated
                raise CheckpointError(f"{source}: tensor of size {list(size)} and stride {list(stride)} "
                                      "overlaps itself (its elements share storage)")
            reach += (n - 1) * s
        if storage_offset + reach >= array.size:
            raise CheckpointError(f"{source}: tensor of size {list(size)} reaches past its storage "
                                  f"({array.size} elements)")
    session.charge(numel * array.itemsize, "tensor", size)
    item = array.itemsize
    view = np.lib.stride_tricks.as_strided(array[storage_offset:], shape=size,
                                           strides=tuple(s * item for s in stride), writeable=False)
    return np.array(view)


def _contiguous(size: tuple) -> tuple:
    """torch's strides of a contiguous tensor of this size."""
    strides, step = [], 1
    for n in reversed(size):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _encode_latin1(text, encoding="latin1"):
    if not isinstance(text, str) or encoding != "latin1":
        raise TypeError(f"unexpected _codecs.encode({type(text).__name__}, {describe(encoding)}) in the pickle")
    return text.encode("latin1")


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None, state=None):
    if not isinstance(data, np.ndarray):
        raise TypeError(f"a parameter of {type(data).__name__}, not a tensor")
    return data


class _OuterUnpickler(SafeUnpickler):
    """Resolves exactly the globals of NVIDIA's PyTorch snapshots, each to a harmless stand-in."""

    what = "an NVIDIA PyTorch network snapshot"
    kind = "PyTorch network pickle"

    def __init__(self, file, source: str, session: LoadSession | None = None):
        data = file if isinstance(file, (bytes, bytearray)) else file.read()
        super().__init__(bytes(data), source, session)

    def globals(self) -> dict:
        allowed = super().globals()
        allowed.update({
            PERSISTENT_GLOBAL: _persistent,
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
        return allowed

    def find_class(self, module: str, name: str):
        try:
            return self.allowed[(module, name)]
        except (KeyError, TypeError):
            raise UnsafeTorchPickleError(
                f"{self.source}: refusing to load: the pickle references {cut(module)}.{cut(name)}, which is not "
                "part of an NVIDIA PyTorch network snapshot (nothing from the file was run)") from None

    def persistent_load(self, pid):
        raise UnsafeTorchPickleError(f"{self.source}: refusing to load: the outer pickle uses persistent IDs")

    def _rebuild_tensor(self, *args):
        return _rebuild_tensor(*args, source=self.source, session=self.session)

    def _load_from_bytes(self, data):
        return load_storage_bytes(data, self.source, self.session)


# -- the module tree out of the plain data -----------------------------------------------------

def _tensors(table, kind: str, where: str, source: str) -> dict:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise CheckpointError(f"{source}: {where}.{kind} is a {type(table).__name__}, not a dict")
    out = {}
    for name, value in table.items():
        if not (isinstance(name, str) and len(name) <= MAX_NAME):
            raise CheckpointError(f"{source}: {where}.{kind} has the name {describe(name)}")
        if value is None and kind == "_buffers":
            out[name] = None
            continue
        if isinstance(value, ArraySpec):  # a numpy array where a tensor belongs: its data all the same
            value = value.array
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{source}: {where}.{cut(name, 40)} is a {type(value).__name__}, not a tensor")
        if value.dtype.kind == "f" or kind == "_parameters":
            value = value.astype(np.float32, copy=False)
        out[name] = value
    return out


class _ModuleReader:
    """The module records of one snapshot → TorchModules. Only what the generator uses is copied
    (attributes, init kwargs: through one PlainCopier, so shared data is copied once and the total
    stays bounded); each record may appear once, at most MAX_MODULE_DEPTH levels deep."""

    def __init__(self, session: LoadSession):
        self.source = session.source
        self.copier = PlainCopier(session, python_scalars=True)
        self.seen: set[int] = set()

    def module(self, record: _Persistent, where: str, depth: int = 0) -> TorchModule:
        source = self.source
        if id(record) in self.seen:
            raise CheckpointError(f"{source}: {where}: a module that appears twice in the network (or contains "
                                  "itself)")
        self.seen.add(id(record))
        meta = record.meta
        if not (isinstance(meta, dict) and meta.get("type") == "class" and isinstance(meta.get("class_name"), str)
                and isinstance(meta.get("state"), dict)):
            raise CheckpointError(f"{source}: {where}: not a persistent network class "
                                  "(expected meta type 'class' with class_name and state)")
        class_name, state = meta["class_name"], meta["state"]
        if len(class_name) > MAX_NAME:
            raise CheckpointError(f"{source}: {where}: class name {describe(class_name)} is too long")
        if depth >= MAX_MODULE_DEPTH:
            raise CheckpointError(f"{source}: {cut(where, 120)}: modules nested more than {MAX_MODULE_DEPTH} "
                                  "levels deep")
        for key in state:
            if not (isinstance(key, str) and len(key) <= MAX_NAME):
                raise CheckpointError(f"{source}: {where}: state key {describe(key)} is not a short string")
        modules = state.get("_modules") or {}
        if not isinstance(modules, dict):
            raise CheckpointError(f"{source}: {where}._modules is not a dict")
        children = {}
        for name, sub in modules.items():
            if not (isinstance(name, str) and len(name) <= MAX_NAME):
                raise CheckpointError(f"{source}: {where}._modules has the name {describe(name)}")
            if sub is None:
                continue
            if not isinstance(sub, _Persistent):
                raise CheckpointError(f"{source}: {where}.{cut(name, 40)} is a {type(sub).__name__}, not a network "
                                      "module")
            children[name] = self.module(sub, cut(f"{where}.{name}", 160), depth + 1)
        attrs = {k: self.plain(v, f"{where}.{cut(k, 40)}") for k, v in state.items()
                 if not k.startswith("_") and k not in _TORCH_KEYS}
        init_kwargs = self.plain(state.get("_init_kwargs") or {}, f"{where}._init_kwargs")
        if not isinstance(init_kwargs, dict):
            raise CheckpointError(f"{source}: {where}._init_kwargs is a {type(init_kwargs).__name__}, not a dict")
        return TorchModule(class_name=class_name, init_kwargs=init_kwargs,
                           params=_tensors(state.get("_parameters"), "_parameters", where, source),
                           buffers=_tensors(state.get("_buffers"), "_buffers", where, source),
                           children=children, attrs=attrs)

    def plain(self, value, where: str):
        if isinstance(value, _Persistent):
            raise CheckpointError(f"{self.source}: {where}: a module where plain data was expected")
        return self.copier.copy(value, where)


def load_torch_pickle(path: Path | str, data: bytes | None = None) -> TorchCheckpoint:
    """A stylegan2-ada-pytorch / StyleGAN3 snapshot → its networks as plain data.
    `data`: the file's bytes, if the caller has read them already."""
    path = Path(path)
    source = str(path)
    if data is None:
        data = read_checkpoint(path)
    try:
        unpickler = _OuterUnpickler(data, source)
        top = unpickler.load()
    except BakeryError:
        raise
    except Exception as exc:  # truncated file, not a pickle, malformed arguments, ...
        raise CheckpointError(f"{path}: not a readable PyTorch network pickle "
                              f"({type(exc).__name__}: {cut(str(exc), 120)})") from None
    if not isinstance(top, dict):
        raise CheckpointError(f"{path}: expected a snapshot dict (G, D, G_ema, ...), got {type(top).__name__}")
    reader = _ModuleReader(unpickler.session)
    networks = {}
    for key, value in top.items():
        if isinstance(value, _Persistent):
            if not (isinstance(key, str) and len(key) <= MAX_NAME):
                raise CheckpointError(f"{path}: the snapshot has a network under the key {describe(key)}")
            networks[key] = reader.module(value, key)
    if not networks:
        keys = ", ".join(cut(str(k), 40) if isinstance(k, str) else describe(k) for k in list(top)[:20])
        raise CheckpointError(f"{path}: the snapshot dict holds no network (keys: {keys})")
    return TorchCheckpoint(path=path, sha256=hashlib.sha256(data).hexdigest(), networks=networks)


def first_network_global(prefix: bytes) -> tuple[str, str] | None:
    """The first global naming a network class (torch persistence or TF1 Network) in a pickle prefix
    (read, never executed: pickletools.genops stops at the first one)."""
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
    return first_network_global(prefix) == PERSISTENT_GLOBAL
