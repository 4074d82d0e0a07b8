"""`--shard I/N` + `bakery merge`: three shards of a small 3-band bake (every stage on), merged,
give exactly the files of the same bake on one machine; shards that do not belong together
are refused before anything is written."""

from __future__ import annotations

import json

import pytest

from bake_support import assert_baked, bakery_process, differences, project_state, three_band_project
from text_support import build_tiny_gpt2

pytestmark = pytest.mark.slow

SHARDS = 3


def shard_dirs(project, count=SHARDS):
    return [str(project / f"build-shard-{i}-of-{count}") for i in range(count)]


@pytest.fixture(scope="module")
def baked(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard")
    model = build_tiny_gpt2(root / "gpt2")
    reference = three_band_project(root / "reference", model)
    assert_baked(bakery_process(reference, "bake"))
    sharded = three_band_project(root / "sharded", model)
    for i in range(SHARDS):
        result = bakery_process(sharded, "bake", "--shard", f"{i}/{SHARDS}")
        assert result.returncode == 0, result.stderr
    return root, model, reference, sharded


def test_three_shards_merged_equal_the_local_bake(baked):
    root, _, reference, sharded = baked
    project = root / "sharded"
    # each shard holds only its own batches: shard 2 owns image batch 2 (IDs 4, 5) and text batch 2
    shard2 = project / "build-shard-2-of-3"
    assert sorted(p.name for p in (shard2 / "build/raw").glob("*.png")) == ["example-4.png", "example-5.png"]
    assert sorted(p.name for p in (shard2 / "public").glob("*.jpg")) == ["example-4.jpg", "example-5.jpg"]
    manifest = json.loads((shard2 / "shard.json").read_text())
    assert manifest["shard"] == [2, 3] and manifest["stages"] == ["generate", "upscale", "compress", "text"]
    assert len(manifest["model_sha256"]) == 64 and manifest["seed_plan"][1][:4] == [3, 5, 0.7, "seeded"]
    assert not (project / "build").exists() and not (project / "public").exists()

    # the shards' 5 short first attempts are resampled by the merge, as the local bake did
    assert_baked(bakery_process(sharded, "merge", *shard_dirs(project)))
    result = bakery_process(sharded, "site")
    assert result.returncode == 0, result.stderr
    expected = project_state(root / "reference")
    got = project_state(project)
    assert [p for p in expected if p.startswith("public/example-")], "the reference bake published nothing"
    assert differences(expected, got) == []

    # a rerun of the bake finds everything done: no image or snippet is redone
    before = {p: p.stat().st_mtime_ns for p in project.glob("build/**/*") if p.suffix in (".png", ".txt")}
    assert_baked(bakery_process(sharded, "bake"))
    assert {p: p.stat().st_mtime_ns for p in before} == before


def refused(config, *folders) -> str:
    result = bakery_process(config, "merge", *folders)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bakery: error: "), result.stderr
    return lines[0]


def test_mismatched_or_missing_shards_are_refused(baked, tmp_path):
    root, model, _, sharded = baked
    project = root / "sharded"
    # a shard of the same seeds baked with another psi for the first band: another config and seed plan
    other = three_band_project(tmp_path / "other", model, psi=0.6)
    result = bakery_process(other, "generate", "--shard", f"1/{SHARDS}")
    assert result.returncode == 0, result.stderr
    target = three_band_project(tmp_path / "target", model)
    dirs = shard_dirs(project)
    line = refused(target, dirs[0], str(tmp_path / "other" / "build-shard-1-of-3"), dirs[2])
    assert "build-shard-1-of-3: baked with another config" in line
    assert "shard(s) 2/3 missing" in refused(target, *dirs[:2])
    assert "given twice" in refused(target, dirs[0], dirs[1], dirs[1])
    assert "not a shard folder" in refused(target, dirs[0], dirs[1], str(tmp_path))
    # shards that agree with each other but not with the project merged into
    assert "than" in refused(other, *dirs) and "refusing to merge" in refused(other, *dirs)
    for project_dir in (tmp_path / "target", tmp_path / "other"):
        assert not (project_dir / "build" / "raw").exists() and not (project_dir / "public").exists()


def test_shards_whose_text_model_lives_at_another_path_still_merge(baked, tmp_path):
    """Shards baked on machines whose venvs sit at different paths: the text settings name
    the same model files (same sha256) by other paths, which a rerun accepts, so merge does."""
    import shutil

    root, model, reference, _ = baked
    target = three_band_project(tmp_path / "paths", model)
    dirs = []
    for folder in shard_dirs(root / "sharded"):
        copy = tmp_path / "paths" / folder.rsplit("/", 1)[-1]
        shutil.copytree(folder, copy, symlinks=True)
        dirs.append(str(copy))
    manifest = tmp_path / "paths" / "build-shard-1-of-3" / "build/text/manifest.json"
    data = json.loads(manifest.read_text())
    for stage in data["settings"]["stages"]:
        stage.update({k: f"/elsewhere/venv/{k}" for k in ("model", "path", "name") if k in stage})
    manifest.write_text(json.dumps(data))
    assert_baked(bakery_process(target, "merge", *dirs))
    snippets = lambda project: {p.name: p.read_bytes() for p in (project / "build/text").glob("snippet-*.txt")}
    assert snippets(tmp_path / "paths") == snippets(root / "reference") != {}
