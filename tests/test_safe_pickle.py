"""safe_pickle: the opcode scan, the numpy stand-ins and the bounded copy that both loaders share."""

from __future__ import annotations

import io
import pickle
import pickletools
import time

import numpy as np
import pytest

from bakery.images import torch_pickle
from bakery.images.safe_pickle import (MAX_TUPLE_NODES, CheckpointError, LoadSession, PlainCopier,
                                       UnsafePickleError, describe, scan_pickle)
from images_helpers import FIXTURES, SG1_PKL, SG2_PKL

ALL_PKLS = sorted(FIXTURES.rglob("*.pkl"))


@pytest.mark.parametrize("path", ALL_PKLS, ids=lambda p: p.stem)
def test_scan_walks_every_fixture_like_genops(path):
    data = path.read_bytes()
    result = scan_pickle(data, str(path))
    *_, (last_op, _, last_pos) = pickletools.genops(io.BytesIO(data))
    assert last_op.name == "STOP" and result.end == last_pos + 1 == len(data)
    assert ("numpy", "dtype") in result.globals or "torch" in str(result.globals)


def test_scan_refuses_what_no_checkpoint_needs():
    for data, message in [
        (b"\x80\x02N" + b"r\x00\x00\x00\x01" + b".", "stores memo entry 16777216 while only 0"),
        (b"\x80\x02Np99999999\n.", "stores memo entry 99999999"),
        (b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"x.", "declares 1099511627776 bytes"),
        (b"\x80\x02\x8b" + (1 << 20).to_bytes(4, "little") + b"\0" * (1 << 20) + b".", "1048576-byte integer"),
        (b"\x80\x02N\x97.", "NEXT_BUFFER opcode"),
        (b"\x80\x02(cos\nsystem\nS'ls'\no.", "OBJ opcode"),
        (b"\x80\x02Nh\x05.", "malformed or truncated"),  # GET of an entry never stored
        (b"\x80\x02N", "ends without a STOP"),
    ]:
        with pytest.raises(CheckpointError, match=message):
            scan_pickle(data, "x.pkl")


def test_scan_bounds_tuples_that_grow_through_shared_parts():
    nested = ()
    for _ in range(12):  # 2**13 - 1 values as a tree, 12 tuples in the file
        nested = (nested, nested)
    scan_pickle(pickle.dumps(nested, protocol=2), "ok.pkl")
    nested = (nested, nested)
    nested = (nested, nested)  # 2**15 - 1 > MAX_TUPLE_NODES
    assert 2 ** 15 > MAX_TUPLE_NODES
    with pytest.raises(UnsafePickleError, match="expands to more than"):
        scan_pickle(pickle.dumps({nested: 1}, protocol=4), "bomb.pkl")


def test_scan_lists_globals_in_both_spellings():
    data = pickle.dumps(np.zeros(2, np.float32), protocol=4)
    assert scan_pickle(data, "x").globals[0] == ("numpy._core.multiarray", "_reconstruct")
    assert ("dnnlib.tflib.network", "Network") == scan_pickle(SG2_PKL.read_bytes(), "x").globals[0]
    assert ("dnnlib.tflib.network", "Network") == scan_pickle(SG1_PKL.read_bytes(), "x").globals[0]


def test_plain_copy_keeps_sharing_and_refuses_blowups():
    session = LoadSession("x.pkl", 1000)
    shared = [1, 2]
    out = PlainCopier(session).copy({"a": shared, "b": (shared, shared)}, "x")
    assert out == {"a": [1, 2], "b": ([1, 2], [1, 2])} and out["a"] is out["b"][0] is out["b"][1]
    dag = []
    for _ in range(30):
        dag = [dag, dag]
    started = time.monotonic()
    with pytest.raises(CheckpointError, match="expands to more than"):
        PlainCopier(session).copy(dag, "x")
    loop = []
    loop.append(loop)
    with pytest.raises(CheckpointError, match="nest in a loop"):
        PlainCopier(session).copy({"k": loop}, "x")
    deep = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(CheckpointError, match="nested more than 100 levels"):
        PlainCopier(session).copy(deep, "x")
    with pytest.raises(CheckpointError, match="a dict key"):
        PlainCopier(session).copy({("a", "b"): 1}, "x")
    assert time.monotonic() - started < 5


def test_describe_is_short_whatever_it_is_given():
    dag = []
    for _ in range(60):
        dag = [dag, dag]
    deep = []
    for _ in range(100_000):
        deep = [deep]
    for value in (dag, deep, "x" * 10_000_000, 7 ** 300, {"k" * 500: dag}, b"\n" * 99):
        started = time.monotonic()
        text = describe(value)
        assert len(text) <= 60 and "\n" not in text and time.monotonic() - started < 1


# -- the nested storage streams: the fast pattern and the scanned path agree ------------------

def _streams(path):
    seen = []

    class Spy(torch_pickle._OuterUnpickler):
        def _load_from_bytes(self, data):
            seen.append(data)
            return super()._load_from_bytes(data)

    Spy(path.read_bytes(), "spy").load()
    return seen


def test_canonical_storage_streams_take_the_fast_path_and_agree_with_the_scanned_one():
    streams = _streams(FIXTURES / "stylegan3" / "stylegan3_t_synthetic_r64.pkl")
    assert len(streams) > 200
    for data in streams[::10]:
        fast = torch_pickle._fast_storage_head(data)
        assert fast is not None
        root, little, pos, storages, keys = torch_pickle._scanned_storage_head(data, "x", LoadSession("x", len(data)))
        assert (fast[0].kind, fast[0].numel, fast[1], fast[2], [fast[3]]) == (root.kind, root.numel, little, pos, keys)


def test_a_stream_the_pattern_does_not_know_loads_through_the_scanned_path():
    from torch_pickle_helpers import legacy_storage_bytes

    values = np.arange(300, dtype=np.float32)
    data = legacy_storage_bytes(values, key="not canonical!")  # a key with spaces: no fast path
    assert torch_pickle._fast_storage_head(data) is None
    np.testing.assert_array_equal(torch_pickle.load_storage_bytes(data, "x").array, values)
    data = legacy_storage_bytes(values)
    assert torch_pickle._fast_storage_head(data) is not None
    np.testing.assert_array_equal(torch_pickle.load_storage_bytes(data, "x").array, values)


def test_an_array_left_unbuilt_across_a_nested_storage_stream_is_still_refused(tmp_path):
    """The storage streams are unpickled inside the outer load, on its session: an outer array
    spec made before one and never filled in must still be caught when the outer load ends."""
    from hostile_pickles import storage, torch_file, tup, unbuilt_array

    path = tmp_path / "x.pkl"
    path.write_bytes(torch_file(tup(unbuilt_array(), storage(np.ones(3, np.float32)))))
    with pytest.raises(CheckpointError, match="never filled in"):
        torch_pickle.load_torch_pickle(path)
