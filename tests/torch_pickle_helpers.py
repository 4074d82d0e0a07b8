"""Write NVIDIA-format PyTorch snapshots without torch or NVIDIA's code (for tests only).

The writer spells every global the way NVIDIA's pickles do (persistence objects, torch's tensor
rebuild functions, nested legacy torch.save storage streams), so the files it makes are read
by the same loader path as real snapshots: handy for hostile variants and changed settings.
"""

from __future__ import annotations

import io
import pickle
import types
from collections import OrderedDict

import numpy as np

from bakery.images.pickle_loader import EasyDict
from bakery.images.torch_pickle import LEGACY_MAGIC, LEGACY_PROTOCOL, TorchModule


def _persistent_obj(meta):  # stands for torch_utils.persistence._reconstruct_persistent_obj
    raise AssertionError("never called")


def _rebuild_tensor_v2(*args):
    raise AssertionError("never called")


def _rebuild_parameter(*args):
    raise AssertionError("never called")


def _load_from_bytes(data):
    raise AssertionError("never called")


class FloatStorage:  # stands for torch.FloatStorage inside the nested streams
    pass


def _names() -> dict[int, tuple[str, str]]:
    from numpy._core import multiarray

    return {id(k): v for k, v in [
        (_persistent_obj, ("torch_utils.persistence", "_reconstruct_persistent_obj")),
        (_rebuild_tensor_v2, ("torch._utils", "_rebuild_tensor_v2")),
        (_rebuild_parameter, ("torch._utils", "_rebuild_parameter")),
        (_load_from_bytes, ("torch.storage", "_load_from_bytes")),
        (FloatStorage, ("torch", "FloatStorage")),
        (OrderedDict, ("collections", "OrderedDict")),
        (EasyDict, ("dnnlib.util", "EasyDict")),
        (multiarray._reconstruct, ("numpy.core.multiarray", "_reconstruct")),
        (multiarray.scalar, ("numpy.core.multiarray", "scalar")),
        (np.ndarray, ("numpy", "ndarray")),
        (np.dtype, ("numpy", "dtype")),
        (set, ("builtins", "set")),
    ]}


class SnapshotPickler(pickle._Pickler):
    """Pure-Python pickler naming our stand-ins as NVIDIA's globals; any other global is allowed
    through `extra` (hostile tests name os.system this way)."""

    def __init__(self, file, protocol, extra=None):
        super().__init__(file, protocol=protocol)
        self.names = {**_names(), **(extra or {})}

    def save_global(self, obj, name=None):
        if id(obj) not in self.names:
            return super().save_global(obj, name)
        module, qualname = self.names[id(obj)]
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)

    def save_type(self, obj):
        return self.save_global(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[type] = save_type
    dispatch[types.FunctionType] = save_global


def legacy_storage_bytes(array: np.ndarray, key: str = "94000000000000", payload=None) -> bytes:
    """A legacy torch.save stream of one float32 storage, as torch.storage._load_from_bytes reads it.
    `payload` (an object with a __reduce__) is pickled in place of the sys-info dict if given."""
    flat = np.ascontiguousarray(array, np.float32).reshape(-1)

    class _Pickler(SnapshotPickler):
        def persistent_id(self, obj):
            if obj is flat:
                return ("storage", FloatStorage, key, "cpu", flat.size, None)
            return None

    buf = io.BytesIO()
    sys_info = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    for obj in (LEGACY_MAGIC, LEGACY_PROTOCOL, payload if payload is not None else sys_info, flat, [key]):
        _Pickler(buf, 2).dump(obj)
    buf.write(flat.size.to_bytes(8, "little"))
    buf.write(flat.astype("<f4").tobytes())
    return buf.getvalue()


class Tensor:
    def __init__(self, array, parameter=False, storage_payload=None):
        self.array, self.parameter, self.storage_payload = np.asarray(array, np.float32), parameter, storage_payload

    def __reduce__(self):
        if self.parameter:
            return _rebuild_parameter, (Tensor(self.array, False, self.storage_payload), True, OrderedDict())
        a = self.array
        strides = tuple(s // 4 for s in np.array(a, np.float32, order="C").strides)
        return _rebuild_tensor_v2, (Storage(a, self.storage_payload), 0, tuple(a.shape), strides, False,
                                    OrderedDict())


class Storage:
    def __init__(self, array, payload=None):
        self.array, self.payload = array, payload

    def __reduce__(self):
        return _load_from_bytes, (legacy_storage_bytes(self.array, payload=self.payload),)


class Persistent:
    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return _persistent_obj, (self.meta,)


def _easy(value):
    if isinstance(value, dict):
        return EasyDict({k: _easy(v) for k, v in value.items()})
    return value


def persistent(module: TorchModule, module_src: str = "# module source omitted\n",
               storage_payload=None) -> Persistent:
    """A TorchModule back into NVIDIA's persistent-object form."""
    state = {
        "training": False,
        "_parameters": OrderedDict((k, Tensor(v, True, storage_payload)) for k, v in module.params.items()),
        "_buffers": OrderedDict((k, None if v is None else Tensor(v, False, storage_payload))
                                for k, v in module.buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_modules": OrderedDict((k, persistent(c, module_src, storage_payload))
                                for k, c in module.children.items()),
        **module.attrs,
        "_init_args": (),
        "_init_kwargs": _easy(module.init_kwargs),
    }
    return Persistent({"type": "class", "version": 6, "module_src": module_src,
                       "class_name": module.class_name, "state": state})


def dumps_snapshot(top: dict, protocol: int = 4, extra_names=None) -> bytes:
    buf = io.BytesIO()
    SnapshotPickler(buf, protocol, extra_names).dump(top)
    return buf.getvalue()
