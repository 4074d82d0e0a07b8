"""NVIDIA's TensorFlow-1 network pickles (StyleGAN 1 and 2 `.pkl`), read and written without TF1.

A TF1 network pickle is a tree of `dnnlib.tflib.network.Network` objects whose state dicts
hold the build options (`static_kwargs`), sub-networks (`components`) and the trained
weights (`variables`: `(name, ndarray)` pairs in creation order). NVIDIA's own loader
imports dnnlib and *executes* the `build_module_src` string stored in the file, so a
checkpoint can carry arbitrary code. This loader admits exactly the globals such a file
legitimately names and refuses everything else before it can run: a `__reduce__` that
calls os.system or eval fails with an error naming the module and attribute, and nothing
from the file is ever imported, called or exec'd. The numpy arrays go through the checked
stand-ins of safe_pickle (no numpy constructor is reachable from the file), the opcodes are
scanned before anything is unpickled, and the state is copied out as plain, bounded data.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bakery.errors import BakeryError
from bakery.fsutil import sha256_file
from bakery.images.safe_pickle import (CheckpointError, LoadSession, PlainCopier, SafeUnpickler,
                                       UnsafePickleError, cut)

__all__ = ["CheckpointError", "UnsafePickleError", "Network", "EasyDict", "RestrictedUnpickler",
           "load_network_pickle", "dumps_network_pickle", "network_state", "NetworkToSave", "sha256_of"]

NETWORK_GLOBAL = ("dnnlib.tflib.network", "Network")
EASYDICT_GLOBALS = {("dnnlib.util", "EasyDict"), ("dnnlib", "EasyDict")}


class Network:
    """Stand-in for dnnlib.tflib.network.Network: keeps the state dict, runs nothing."""

    @classmethod
    def of(cls, state: dict) -> "Network":
        net = cls()
        net.state = state
        return net

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise TypeError(f"Network state must be a dict, got {type(state).__name__}")
        if hasattr(self, "state"):
            raise TypeError("a Network's state is filled in twice")
        self.state = state

    # Read-only views of the state keys the generator needs.
    @property
    def name(self) -> str:
        return self.state.get("name", "?")

    @property
    def build_func_name(self) -> str:
        return self.state.get("build_func_name", "?")

    @property
    def static_kwargs(self) -> dict:
        return dict(self.state.get("static_kwargs") or {})

    @property
    def components(self) -> dict:
        return dict(self.state.get("components") or {})

    @property
    def variables(self) -> dict[str, np.ndarray]:
        """Local variable name → float32 array, in the stored (TF creation) order."""
        return {name: np.asarray(value, np.float32) for name, value in self.state.get("variables", [])}


class EasyDict(dict):
    """dnnlib's attribute dict; only ever filled by the pickle's SETITEMS, never called with code."""

    def __setstate__(self, state):  # NVIDIA's have none; attributes would be ignored anyway
        if not isinstance(state, dict):
            raise TypeError(f"EasyDict state must be a dict, got {type(state).__name__}")


class RestrictedUnpickler(SafeUnpickler):
    """Resolves only the network class, EasyDict and safe_pickle's numpy stand-ins; load() returns
    plain data (Networks whose state holds dicts, lists, numbers, strings and numpy arrays)."""

    what = "an NVIDIA network checkpoint"

    def __init__(self, file, source: str, session: LoadSession | None = None):
        data = file if isinstance(file, (bytes, bytearray)) else file.read()
        super().__init__(bytes(data), source, session, encoding="latin1")

    def globals(self) -> dict:
        allowed = super().globals()
        allowed[NETWORK_GLOBAL] = Network
        for key in EASYDICT_GLOBALS:
            allowed[key] = EasyDict
        return allowed

    def load(self):
        copier = PlainCopier(self.session, {Network: (_network_content, Network.of)})
        return copier.copy(super().load(), "the pickle")


def _network_content(net: Network) -> dict:
    if not hasattr(net, "state"):
        raise TypeError("a Network in the pickle has no state")
    return net.state


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    sha256: str
    gs: Network


sha256_of = sha256_file


def read_checkpoint(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc.strerror})") from None


def load_network_pickle(path: Path | str, data: bytes | None = None) -> Checkpoint:
    """Load a (G, D, Gs) snapshot or a lone Gs; returns the Gs network (used for generation).
    `data`: the file's bytes, if the caller has read them already."""
    path = Path(path)
    if data is None:
        data = read_checkpoint(path)
    gs = _pick_gs(unpickle_networks(path, data), path)
    _check_network(gs, path)
    return Checkpoint(path=path, sha256=hashlib.sha256(data).hexdigest(), gs=gs)


def unpickle_networks(path: Path, data: bytes):
    """The file's networks as plain data: a lone Network or NVIDIA's (G, D, Gs) tuple."""
    try:
        return RestrictedUnpickler(data, str(path)).load()
    except BakeryError:
        raise
    except Exception as exc:  # truncated file, not a pickle, bad numpy payload, ...
        raise CheckpointError(f"{path}: not a readable network pickle ({type(exc).__name__}: "
                              f"{cut(str(exc), 120)})") from None


def _pick_gs(obj, path: Path) -> Network:
    if isinstance(obj, Network):
        return obj
    if isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, Network) for n in obj):
        return obj[2]  # (G, D, Gs): Gs is the moving average that NVIDIA samples from
    raise CheckpointError(f"{path}: expected a (G, D, Gs) tuple or a single Gs Network, "
                          f"got {type(obj).__name__}")


MAX_NETWORK_DEPTH = 4  # NVIDIA's Gs → mapping/synthesis is 2 deep


def _check_network(net: Network, path: Path, ancestors: tuple = ()) -> None:
    """The state's shape, checked before anything reads it: a crafted file with a string
    where a dict belongs, or a network that contains itself, is one clear error."""
    if not hasattr(net, "state"):
        raise CheckpointError(f"{path}: a Network in the pickle has no state")
    if any(net is a for a in ancestors) or len(ancestors) >= MAX_NETWORK_DEPTH:
        raise CheckpointError(f"{path}: network components nest in a loop or deeper than "
                              f"{MAX_NETWORK_DEPTH} levels (a network that contains itself?)")
    for key in ("static_kwargs", "components", "variables", "build_func_name"):
        if key not in net.state:
            raise CheckpointError(f"{path}: network {_label(net)} lacks the state key {key!r}")
    for key in ("name", "build_func_name"):
        if key in net.state and not isinstance(net.state[key], str):
            raise CheckpointError(f"{path}: network {_label(net)}: {key} must be a string")
    for key in ("static_kwargs", "components"):
        value = net.state[key]
        if value is not None and not (isinstance(value, dict) and all(isinstance(k, str) for k in value)):
            raise CheckpointError(f"{path}: network {_label(net)}: {key} must be a dict with string keys, "
                                  f"got {type(value).__name__}")
    variables = net.state["variables"]
    if not isinstance(variables, list) or not all(
            isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
            and isinstance(v[1], (np.ndarray, np.floating)) and v[1].dtype.kind in "fiu" for v in variables):
        raise CheckpointError(f"{path}: network {_label(net)}: variables must be (name, numeric array) pairs")
    for child in net.components.values():
        if not isinstance(child, Network):
            raise CheckpointError(f"{path}: network {_label(net)} has a component that is not a Network")
        _check_network(child, path, ancestors + (net,))


def _label(net: Network) -> str:
    return repr(net.name)[:80]


# ---------------------------------------------------------------------------------------
# Writing: the same format, so the project can make its own checkpoints (demo model, tests).

_WRITE_NAMES = {}


def _write_names() -> dict[int, tuple[str, str]]:
    if not _WRITE_NAMES:
        from numpy._core import multiarray

        _WRITE_NAMES.update({
            id(multiarray._reconstruct): ("numpy.core.multiarray", "_reconstruct"),
            id(multiarray.scalar): ("numpy.core.multiarray", "scalar"),
            id(np.ndarray): ("numpy", "ndarray"),
            id(np.dtype): ("numpy", "dtype"),
            id(NetworkToSave): NETWORK_GLOBAL,
        })
    return _WRITE_NAMES


class NetworkToSave:
    """A network to write: pickles as GLOBAL dnnlib.tflib.network Network, NEWOBJ, state, BUILD."""

    def __init__(self, state: dict):
        self.state = state

    def __reduce_ex__(self, protocol):
        import copyreg

        return copyreg.__newobj__, (NetworkToSave,), self.state


class _NvidiaPickler(pickle._Pickler):
    """Spells globals the way NVIDIA's 2019/2020 files do (numpy 1.x module names)."""

    def save_global(self, obj, name=None):
        try:
            module, qualname = _write_names()[id(obj)]
        except KeyError:
            raise TypeError(f"unexpected global {obj!r} in a network pickle") from None
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("utf-8"))
        self.memoize(obj)

    # Classes (np.ndarray, np.dtype, NetworkToSave) reach pickle through save_type.
    def save_type(self, obj):
        return self.save_global(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[type] = save_type


def network_state(name: str, build_func_name: str, static_kwargs: dict, variables: list,
                  components: dict | None = None, version: int = 4,
                  build_module_src: str = "# TF1 build source omitted: never executed\n") -> dict:
    """The state dict of one network, keys in the order NVIDIA's __getstate__ writes them."""
    return {
        "version": version,
        "name": name,
        "static_kwargs": dict(static_kwargs),
        "components": dict(components or {}),
        "build_module_src": build_module_src,
        "build_func_name": build_func_name,
        "variables": [(n, np.float32(v) if np.ndim(v) == 0 else np.asarray(v, np.float32))
                      for n, v in variables],
    }


def dumps_network_pickle(obj, protocol: int = 3) -> bytes:
    """obj: a NetworkToSave or a tuple of them; returns the bytes of an NVIDIA-format pickle."""
    buf = io.BytesIO()
    _NvidiaPickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()
