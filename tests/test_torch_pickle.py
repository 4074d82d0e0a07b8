"""The safe loader for NVIDIA's PyTorch snapshots: reads the real format, runs nothing from it."""

from __future__ import annotations

import io
import json
import os
import pickle

import numpy as np
import pytest

from bakery.images import torch_pickle
from bakery.images.pickle_loader import CheckpointError
from bakery.images.torch_pickle import is_torch_pickle, load_storage_bytes, load_torch_pickle
from images_helpers import FIXTURES, SG2_PKL
from torch_pickle_helpers import Persistent, dumps_snapshot, legacy_storage_bytes, persistent

ADA_DIR = FIXTURES / "stylegan2_ada"
ADA_PKL = ADA_DIR / "stylegan2_ada_synthetic_r64.pkl"


@pytest.fixture(scope="module")
def ada():
    return load_torch_pickle(ADA_PKL)


def test_reads_the_ada_snapshot_as_plain_data(ada):
    manifest = json.loads((ADA_DIR / "manifest.json").read_text())
    assert ada.sha256 == manifest["pickle"]["sha256"]
    assert list(ada.networks) == ["G", "D", "G_ema"]  # augment_pipe is None, training_set_kwargs a dict
    g = ada.generator()
    assert g is ada.networks["G_ema"]
    assert g.class_name == "Generator" and type(g.init_kwargs) is dict
    assert g.init_kwargs == manifest["generator"]["init_kwargs"]
    assert type(g.init_kwargs["synthesis_kwargs"]) is dict  # EasyDict → dict all the way down
    assert g.attrs["num_ws"] == 10 and list(g.children) == ["synthesis", "mapping"]
    block = g.child("synthesis").child("b64")
    assert block.attrs["architecture"] == "skip" and list(block.children) == ["conv0", "conv1", "torgb"]
    conv0 = block.child("conv0")
    assert conv0.attrs["up"] == 2 and conv0.attrs["conv_clamp"] == 256
    assert isinstance(conv0.attrs["act_gain"], float)  # numpy float64 scalar → float
    tensors = g.named_tensors()
    for name, strength in manifest["generator"]["noise_strengths"].items():
        assert tensors[name].dtype == np.float32 and tensors[name].shape == ()
        assert float(tensors[name]) == pytest.approx(strength, rel=1e-6)
    assert tensors["synthesis.b4.const"].shape == (32, 4, 4)
    np.testing.assert_allclose(tensors["synthesis.b8.resample_filter"],
                               np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64, rtol=1e-6)
    # G has other weights than G_ema in this file: taking the wrong one would show
    assert not np.array_equal(ada.networks["G"].named_tensors()["mapping.fc0.weight"], tensors["mapping.fc0.weight"])


@pytest.mark.slow  # importing torch takes seconds
@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_tensors_are_copies_that_keep_no_storage_stream_alive(ada):
    """Storages are read-only views of their stream while loading; every tensor is copied out of
    one, so a loaded snapshot holds no view of the file's bytes (nor of a whole storage)."""
    tensors = {k: v for net in ada.networks.values() for k, v in net.named_tensors().items()}
    assert len(tensors) > 100
    for name, value in tensors.items():
        assert value.flags.owndata and value.flags.writeable, name
    stream = legacy_storage_bytes(np.arange(5, dtype=np.float32), key="0")
    storage = load_storage_bytes(stream, "x")
    assert not storage.array.flags.writeable and storage.array.base is not None
    np.testing.assert_array_equal(storage.array, np.arange(5, dtype=np.float32))


def test_storage_reader_agrees_with_torch_weights_only_loader():
    torch = pytest.importorskip("torch")
    seen = []

    class Spy(torch_pickle._OuterUnpickler):
        def _load_from_bytes(self, data):
            seen.append(data)
            return super()._load_from_bytes(data)

    Spy(io.BytesIO(ADA_PKL.read_bytes()), "ada").load()
    assert len(seen) > 200
    for data in seen[::20]:
        ours = load_storage_bytes(data, "ada").array
        theirs = torch.load(io.BytesIO(data), weights_only=True)
        np.testing.assert_array_equal(ours, np.asarray(theirs.tolist(), np.float32))


def test_sniff_tells_torch_from_tf1_and_garbage(tmp_path):
    assert is_torch_pickle(ADA_PKL)
    assert not is_torch_pickle(SG2_PKL)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle at all")
    assert not is_torch_pickle(junk) and not is_torch_pickle(tmp_path / "missing.pkl")


def test_writer_round_trip_and_protocol_3(ada, tmp_path):
    for protocol in (3, 4):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(dumps_snapshot({"G_ema": persistent(ada.generator())}, protocol))
        again = load_torch_pickle(path).generator()
        for name, value in ada.generator().named_tensors().items():
            np.testing.assert_array_equal(again.named_tensors()[name], value)
        assert again.init_kwargs == ada.generator().init_kwargs


def test_no_generator_is_a_clear_error(ada, tmp_path):
    path = tmp_path / "d_only.pkl"
    path.write_bytes(dumps_snapshot({"D": persistent(ada.networks["D"])}))
    with pytest.raises(CheckpointError, match="neither 'G_ema' nor 'G'.*networks found: D"):
        load_torch_pickle(path).generator()


@pytest.mark.parametrize("data, message", [
    (b"", "not a readable PyTorch network pickle"),
    (pickle.dumps([1, 2]), "expected a snapshot dict"),
    (pickle.dumps({"a": 1}), "holds no network"),
])
def test_malformed_files_are_clear_errors(tmp_path, data, message):
    path = tmp_path / "bad.pkl"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=message):
        load_torch_pickle(path)


def test_truncated_tensor_data_is_refused():
    data = legacy_storage_bytes(np.arange(6, dtype=np.float32))
    assert list(load_storage_bytes(data, "x").array) == list(range(6))
    with pytest.raises(CheckpointError, match="truncated"):
        load_storage_bytes(data[:-4], "x")


# -- hostile checkpoints: each is refused or loads without running anything ------------------

class System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _payload_source(marker) -> str:
    return f"import os\nopen({str(marker)!r}, 'w').write('pwned')\nos.system('touch {marker}')\n"


def test_payload_in_module_source_is_never_run(ada, tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil_src.pkl"
    path.write_bytes(dumps_snapshot({"G_ema": persistent(ada.generator(), module_src=_payload_source(marker))}))
    loaded = load_torch_pickle(path).generator()  # a valid network: it loads, the source is ignored
    assert loaded.class_name == "Generator" and not marker.exists()
    assert "module_src" not in loaded.attrs


def test_payload_in_nested_tensor_bytes_is_refused(ada, tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil_storage.pkl"
    path.write_bytes(dumps_snapshot({"G_ema": persistent(ada.generator(), storage_payload=System(marker))}))
    with pytest.raises(CheckpointError, match=r"tensor data names (posix|os|nt)\.system"):
        load_torch_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_reduce_calling_os_system_is_refused(ada, tmp_path, protocol):
    marker = tmp_path / "marker"
    path = tmp_path / "evil_reduce.pkl"
    top = {"G_ema": persistent(ada.generator()), "augment_pipe": System(marker)}
    path.write_bytes(dumps_snapshot(top, protocol))
    with pytest.raises(CheckpointError, match=r"references (posix|os|nt)\.system.*nothing from the file was run"):
        load_torch_pickle(path)
    assert not marker.exists()


def test_reduce_inside_a_module_state_is_refused(ada, tmp_path):
    marker = tmp_path / "marker"
    module = ada.generator()
    evil = Persistent({"type": "class", "version": 6, "module_src": "", "class_name": "Generator",
                       "state": {"_parameters": {}, "_buffers": {}, "_modules": {}, "z_dim": System(marker)}})
    path = tmp_path / "evil_state.pkl"
    path.write_bytes(dumps_snapshot({"G_ema": evil, "G": persistent(module)}))
    with pytest.raises(CheckpointError, match="system"):
        load_torch_pickle(path)
    assert not marker.exists()
