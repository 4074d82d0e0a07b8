"""The scale-out options without a cluster: --shard parsing and batch ownership, [ray]
validation, and the one line `--ray` prints when Ray is not installed."""

from __future__ import annotations

import sys

import pytest

from bakery.cli import main
from bakery.scale.shard import Shard, owned_ids, parse_shard, plan_batches
from tests.conftest import FIXTURES, write_project


def test_shard_batches_are_cut_from_the_whole_list_not_from_what_is_left():
    ids = list(range(9))  # batches of 2: [0,1] [2,3] [4,5] [6,7] [8]
    assert plan_batches(ids, ids, 2, Shard(1, 3)) == [[2, 3], [8]]
    # a resumed shard keeps its IDs: 3 done → only 2 and 8 left, no ID of another shard
    assert plan_batches(ids, [0, 1, 2, 4, 5, 6, 7, 8], 2, Shard(1, 3)) == [[2], [8]]
    assert plan_batches(ids, [1, 2, 4], 2, None) == [[1, 2], [4]]  # no shard: the local batches
    owned = [owned_ids(ids, 2, Shard(i, 3)) for i in range(3)]
    assert sorted(i for part in owned for i in part) == ids  # every ID in exactly one shard


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1/0", "1", "a/b", ""])
def test_bad_shard_is_refused(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        parse_shard(text)


@pytest.mark.parametrize("text, names", [("2/2", "the shards of 2 are 0/2 and 1/2"),
                                         ("3/3", "the shards of 3 are 0/3, 1/3 and 2/3"),
                                         ("100/100", "the shards of 100 are 0/100 to 99/100"),
                                         ("1/1", "the one shard of 1 is 0/1")])
def test_a_shard_past_the_last_names_the_real_shards(text, names):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError) as refused:
        parse_shard(text)
    assert str(refused.value) == f"needs 0 <= I < N (shards count from 0), got {text!r}: {names}"


def project(tmp_path, extra=""):
    return write_project(tmp_path, f"""
        [images]
        model = "{FIXTURES / 'stylegan2' / 'stylegan2_tf1_synthetic_r64.pkl'}"
        [[images.bands]]
        seeds = "0-1"
        psi = 0.7
    """ + extra)


def test_ray_without_ray_installed_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    config = project(tmp_path)
    assert main(["-q", "-c", str(config), "generate", "--ray"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bakery: error: --ray needs Ray: pip install 'bakery[ray]' (or: pip install 'ray[default]>=2.40')"]
    assert not list(tmp_path.glob("build/raw/*.png"))


@pytest.mark.parametrize("table, key", [("num_cpus = 0", "ray.num_cpus"), ("workers = 0", "ray.workers"),
                                        ("use_gpus = \"yes\"", "ray.use_gpus"), ("gpus = 1", "ray.gpus")])
def test_bad_ray_section_is_refused_before_any_work(tmp_path, capsys, table, key):
    config = project(tmp_path, f"\n[ray]\n{table}\n")
    assert main(["-q", "-c", str(config), "generate", "--ray"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{key}:" in err[0], err
    assert not (tmp_path / "build" / "raw").exists()


def test_ray_address_with_nothing_listening_is_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = project(tmp_path)
    assert main(["-q", "-c", str(config), "generate", "--ray", f"127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--ray 127.0.0.1:{port}: no Ray head answers there" in err[0], err
