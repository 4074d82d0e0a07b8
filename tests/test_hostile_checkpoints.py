"""Hostile checkpoints through the CLI: each crafted file (tests/hostile_pickles.py, assembled
opcode by opcode) ends in one clear error line, exit 1 or 2, no traceback, no signal, peak RSS
well under 1 GB under a 2 GB address-space limit, and nothing written, on both loader paths."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from hostile_pickles import (Case, array, by, cases, doubling_list_dag, dtype, run_generate, storage, tensor,
                             tf1_file, torch_file)

REPO = Path(__file__).resolve().parent.parent
MAX_RSS_MB = 400  # "well under 1 GB": the CLI itself needs ~60 MB, the largest file ~4 MB


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_hostile_checkpoint_is_one_clear_error(tmp_path, case: Case):
    model = tmp_path / f"{case.id}.pkl"
    model.write_bytes(case.make())
    out = tmp_path / "out"
    result = run_generate(model, out, REPO)
    assert not result.timed_out, result
    assert result.returncode in (1, 2), result  # negative would be a signal (SIGSEGV, SIGKILL)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bakery: error: "), result.stderr[:2000]
    assert str(model) in lines[0] and "Traceback" not in result.stderr
    assert len(lines[0]) < 600, lines[0]
    assert result.max_rss_mb < MAX_RSS_MB, result
    assert result.out_entries == [], result


# -- the same checks in-process, naming what refuses each class -------------------------------

def _load(path: Path):
    from bakery.images.checkpoints import load_generator

    return load_generator(path)


@pytest.mark.parametrize("case, message", [
    ("structured_dtype_heap_write-tf1", "numpy dtype 'V16'; only numeric arrays are allowed"),
    ("structured_scalar_oob_read-torch", "numpy dtype 'V16'"),
    ("ndarray_negative_offset-tf1", "not callable"),
    ("stringdtype_T_reconstruct-torch", "numpy dtype 'T'"),
    ("object_dtype_reconstruct_build-tf1", "numpy dtype 'O8'"),
    ("object_array_declared_shape-torch", "malformed numpy array header"),
    ("long_binput_huge_memo_index-tf1", "stores memo entry 4294967280 while only 0 are in use"),
    ("binbytes8_huge_length-torch", "declares 4611686018427387904 bytes"),
    ("stride0_tensor_SxS-torch", "overlaps itself"),
    ("stride0_tensor_SxS-tf1", "references torch._utils._rebuild_tensor_v2, which is not part of an NVIDIA"),
    ("overlapping_tensor_view-torch", "overlaps itself"),
    ("tensor_offset_past_end-torch", "past its storage"),
    ("storage_reused_500x-torch", "more than 3× its size"),
    ("bytes_reused_500x-tf1", "more than 3× its size"),
    ("doubling_list_dag-torch", "expands to more than 2,000,000 values"),
    ("doubling_list_dag_static_kwargs-tf1", "expands to more than 2,000,000 values"),
    ("doubling_tuple_dict_key-tf1", "a tuple in the pickle expands to more than 10000 values"),
    ("deep_lists_200k-torch", "nested more than 100 levels deep"),
    ("deep_module_tree_3000-torch", "modules nested more than 32 levels deep"),
    ("deep_module_tree_3000-tf1", "nested more than 100 levels deep"),
    ("array_without_build-tf1", "never filled in (no BUILD)"),
    ("array_wrong_byte_length-torch", "holds 16 bytes, not 8000000"),
])
def test_each_class_is_refused_for_its_reason(tmp_path, case, message):
    from bakery.images.pickle_loader import CheckpointError

    found = {c.id: c for c in cases()}[case]
    path = tmp_path / "x.pkl"
    path.write_bytes(found.make())
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        _load(path)
    assert "\n" not in str(err.value) and len(str(err.value)) < 600


def test_the_wrappers_load_when_the_payload_is_plain(tmp_path):
    """The corpus' TF1 and PyTorch wrappers are well-formed: with a harmless payload they get past
    the loader (and fail later, on the architecture, as a network this small must)."""
    from bakery.images.pickle_loader import CheckpointError, load_network_pickle
    from bakery.images.torch_pickle import load_torch_pickle

    good = array((2, 3), dtype("f4"), by(np.arange(6, dtype="<f4").tobytes()))
    path = tmp_path / "tf1.pkl"
    path.write_bytes(tf1_file(good))
    gs = load_network_pickle(path).gs
    np.testing.assert_array_equal(gs.variables["w"], np.arange(6, dtype=np.float32).reshape(2, 3))
    path = tmp_path / "torch.pkl"
    path.write_bytes(torch_file(tensor(storage(np.arange(6, dtype=np.float32)), 1, (2, 2), (1, 2))))
    g = load_torch_pickle(path).generator()
    np.testing.assert_array_equal(g.attrs["z_dim"], np.array([[1, 3], [2, 4]], np.float32))
    path.write_bytes(torch_file(doubling_list_dag(8)))  # 2**8 as a tree: small enough, each list copied once
    top = load_torch_pickle(path).generator().attrs["z_dim"]
    assert top[0] is top[1] and top[0][0] is top[1][1]
    with pytest.raises(CheckpointError, match="unsupported generator architecture|lacks|static_kwargs|variable"):
        _load(tmp_path / "tf1.pkl")


def test_numpy_values_come_out_as_numpy_built_them(tmp_path):
    """Every dtype the stand-ins admit, both byte orders, C and Fortran order: same values as numpy;
    in native byte order a read-only view of the file's (immutable) bytes that cannot be made
    writeable, else numpy's own byte-swapped copy."""
    from bakery.images.pickle_loader import load_network_pickle
    from bakery.images.torch_pickle import load_torch_pickle

    values = [np.arange(12, dtype=d).reshape(3, 4) for d in ("<f4", ">f4", "<f8", "<f2", "<i8", ">i4", "u1", "<u8")]
    values.append(np.arange(12).reshape(3, 4) % 3 == 0)
    values.append(np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)))
    for k, value in enumerate(values):
        data = pickle.dumps(value, protocol=3)
        path = tmp_path / f"v{k}.pkl"
        path.write_bytes(torch_file(data[2:-1]))  # numpy's own pickle of the array as the payload
        loaded = [load_torch_pickle(path).generator().attrs["z_dim"]]
        if value.dtype.kind in "fiu":  # what a TF1 variable may be
            path.write_bytes(tf1_file(data[2:-1]))
            loaded.append(load_network_pickle(path).gs.state["variables"][0][1])
        for array_ in loaded:
            np.testing.assert_array_equal(array_, value)
            assert array_.dtype == value.dtype.newbyteorder("=")
            assert array_.flags.f_contiguous if value.flags.f_contiguous and value.ndim > 1 else array_.flags.c_contiguous
            if value.dtype.isnative:
                assert not array_.flags.writeable and isinstance(_buffer_owner(array_), bytes)
                with pytest.raises(ValueError):
                    array_.setflags(write=True)
            else:
                assert array_.flags.writeable and array_.flags.owndata


def _buffer_owner(array_):
    base = array_
    while isinstance(base, np.ndarray):
        base = base.base
    return base
