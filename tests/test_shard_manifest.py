"""shard.json is input from other machines: `bakery merge` validates it key by key, like a
config table, before anything is written (no full bake needed: the manifests are made here)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from bakery.cli import main
from bakery.config import load_config
from bakery.scale.shard import SHARD_FILE, fingerprint
from tests.conftest import FIXTURES, write_project


@pytest.fixture
def shards(tmp_path):
    """A project and the two shard folders of a 2-shard bake of it, with manifests that agree."""
    toml = write_project(tmp_path, f"""
        [images]
        model = "{FIXTURES / 'stylegan2' / 'stylegan2_tf1_synthetic_r64.pkl'}"
        [[images.bands]]
        seeds = "0-1"
        psi = 0.7
    """)
    base = {"version": 1, "stages": ["generate"],
            **fingerprint(load_config(toml), SimpleNamespace(batch_size=None, text_batch_size=None))}
    folders = []
    for i in range(2):
        folder = tmp_path / f"build-shard-{i}-of-2"
        folder.mkdir()
        (folder / SHARD_FILE).write_text(json.dumps({**base, "shard": [i, 2]}))
        folders.append(folder)
    return toml, folders


def merge_line(toml, folders, capsys) -> str:
    code = main(["-q", "-c", str(toml), "merge", *map(str, folders)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and err[0].startswith("bakery: error: "), err
    assert "Traceback" not in err[0] and len(err[0]) < 300
    root = toml.parent.parent
    assert not (root / "build").exists() and not (root / "public").exists()  # nothing written
    return err[0]


BAD = [
    ("shard", [0, 10**12], "shard count 1000000000000 is out of range"),  # used to count to 10**12
    ("shard", "0/2", "must be [I, N], two integers"),
    ("shard", [0, 0], "shard count 0 is out of range"),
    ("shard", [2, 2], "shard index 2 is out of range"),
    ("shard", [-1, 2], "shard index -1 is out of range"),
    ("shard", [True, 2], "must be [I, N], two integers"),
    ("shard", [0, 2, 5], "must be [I, N], two integers"),
    ("shard", None, "is required but missing"),
    ("stages", "generate", "must be a list of strings"),
    ("stages", ["generate", "../x"], "unknown stage '../x'"),
    ("batch_size", "4", "must be an integer"),
    ("batch_size", 10**12, "is out of range"),
    ("text_batch_size", 0, "is out of range"),
    ("model_sha256", 12, "must be a string"),
    ("model_sha256", "zz", "must be a sha256 in hex"),
    ("config_sha256", None, "is required but missing"),
    ("seed_plan", "0-1", "must be a list of bands"),
    ("surprise", 1, "unknown key"),
]


@pytest.mark.parametrize("key, value, problem", BAD, ids=[f"{k}={v!r}"[:40] for k, v, _ in BAD])
def test_a_bad_shard_json_value_is_one_line_naming_the_file_and_key(shards, capsys, key, value, problem):
    toml, folders = shards
    path = folders[1] / SHARD_FILE
    data = json.loads(path.read_text())
    if value is None:
        del data[key]
    else:
        data[key] = value
    path.write_text(json.dumps(data))
    line = merge_line(toml, folders, capsys)
    assert f"{path}: {key}: " in line and problem in line, line


def test_a_large_valid_shard_count_is_a_short_missing_line(shards, capsys):
    toml, folders = shards
    for i, folder in enumerate(folders):
        data = json.loads((folder / SHARD_FILE).read_text())
        (folder / SHARD_FILE).write_text(json.dumps({**data, "shard": [i, 10_000]}))
    line = merge_line(toml, folders, capsys)
    assert "shard(s) 2/10000, 3/10000, 4/10000, 5/10000, 6/10000, ... (9998 in all) missing" in line


def test_manifests_that_validate_reach_the_next_check(shards, capsys):
    """The good manifests pass validation: merge goes on and asks for the shards' outputs."""
    toml, folders = shards
    code = main(["-q", "-c", str(toml), "merge", *map(str, folders)])
    err = capsys.readouterr().err
    assert code != 0 and "generate ID 0 is missing or does not verify" in err, err
