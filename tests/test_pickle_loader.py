"""The restricted loader for NVIDIA TF1 pickles: reads real-format files, runs nothing from them."""

from __future__ import annotations

import os
import pickle
import pickletools

import numpy as np
import pytest

from bakery.images.pickle_loader import (CheckpointError, Network, UnsafePickleError, dumps_network_pickle,
                                         load_network_pickle, sha256_of)
from images_helpers import SG1_PKL, SG2_PKL, load_tuple, resave


def globals_of(data: bytes) -> list[str]:
    """Every global a pickle names, for GLOBAL (protocol ≤ 3) and STACK_GLOBAL (protocol 4)."""
    names, strings = [], []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            names.append(arg.replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            names.append(".".join(strings[-2:]))
    return names


@pytest.mark.parametrize("path", [SG2_PKL, SG1_PKL], ids=["stylegan2-proto3", "stylegan1-proto4"])
def test_loads_nvidia_tuple_and_takes_gs(path):
    ckpt = load_network_pickle(path)
    assert ckpt.sha256 == sha256_of(path)
    gs = ckpt.gs
    assert isinstance(gs, Network) and gs.name == "Gs"
    assert set(gs.components) == {"synthesis", "mapping"}
    assert gs.static_kwargs["resolution"] == 64
    assert list(gs.variables)[:2] == ["lod", "dlatent_avg"]
    # G holds different weights in these files: make sure we did not take index 0
    g, _, gs2 = load_tuple(path)
    assert not np.array_equal(g.components["mapping"].variables["Dense0/weight"],
                              gs.components["mapping"].variables["Dense0/weight"])


def test_gs_only_pickle_and_writer_spell_globals_like_nvidia(tmp_path):
    _, _, gs = load_tuple(SG2_PKL)
    data = dumps_network_pickle(resave(gs), protocol=3)
    assert sorted(set(globals_of(data))) == sorted(set(globals_of(SG2_PKL.read_bytes())))
    assert "dnnlib.tflib.network.Network" in globals_of(data)
    path = tmp_path / "gs_only.pkl"
    path.write_bytes(data)
    loaded = load_network_pickle(path).gs
    for key, value in gs.components["synthesis"].variables.items():
        np.testing.assert_array_equal(loaded.components["synthesis"].variables[key], value)


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.mark.parametrize("make, protocol, named", [
    (lambda m: _System(m), 3, "system"),
    (lambda m: _Eval(m), 4, "builtins.eval"),
    (lambda m: (np.zeros(3, np.float32), {"variables": [_Eval(m)]}), 3, "builtins.eval"),
])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, make, protocol, named):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(make(marker), protocol=protocol))
    assert not marker.exists()
    with pytest.raises(UnsafePickleError) as err:
        load_network_pickle(path)
    message = str(err.value)
    assert named in message and "evil.pkl" in message and "\n" not in message
    assert not marker.exists()  # nothing ran


def test_build_module_src_is_never_executed(tmp_path):
    marker = tmp_path / "marker"
    _, _, gs = load_tuple(SG2_PKL)
    net = resave(gs)
    net.state["build_module_src"] = f"open({str(marker)!r}, 'w').write('pwned')\n"
    path = tmp_path / "src.pkl"
    path.write_bytes(dumps_network_pickle(net))
    assert load_network_pickle(path).gs.name == "Gs"
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps(np.array([1, "a"], dtype=object), protocol=3))
    with pytest.raises(UnsafePickleError, match="object"):
        load_network_pickle(path)


@pytest.mark.parametrize("payload, problem", [
    (b"not a pickle at all", "not a readable network pickle"),
    (pickle.dumps({"a": 1}, protocol=3), "expected a (G, D, Gs) tuple"),
    (None, "not a readable network pickle"),  # truncated real file
])
def test_broken_files_give_one_clear_error(tmp_path, payload, problem):
    path = tmp_path / "bad.pkl"
    path.write_bytes(payload if payload is not None else SG2_PKL.read_bytes()[:100_000])
    with pytest.raises(CheckpointError) as err:
        load_network_pickle(path)
    assert problem in str(err.value) and str(path) in str(err.value)
