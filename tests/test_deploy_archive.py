"""`bakery archive vN`: the current generation moves into public/vN/ by renames, crash-safely."""

from __future__ import annotations

import os

import pytest

import bakery.deploy.archive as archive_mod
from bakery.cli import main
from bakery.config import load_config
from bakery.deploy.archive import archive
from bakery.deploy.files import scan_tree
from bakery.errors import BakeryError
from deploy_support import fill_public, tree_bytes, write_project


@pytest.fixture
def baked(tmp_path):
    """A project with a baked generation in public/ and its intermediates in build/."""
    toml = write_project(tmp_path, "")
    public, build = tmp_path / "public", tmp_path / "build"
    files = fill_public(public, 4)
    (public / "snippets.tar.gz").write_bytes(b"tarball")
    files["snippets.tar.gz"] = b"tarball"
    for stage, name in (("raw", "example-{}.png"), ("upscaled", "example-{}.png"), ("text", "snippet-{}.txt")):
        for i in range(4):
            (build / stage).mkdir(parents=True, exist_ok=True)
            (build / stage / name.format(i)).write_bytes(f"{stage} {i}".encode())
    (build / "raw" / "manifest.json").write_text("{}")
    (build / "site").mkdir()
    (build / "site" / "manifest.json").write_text("{}")
    return load_config(toml), toml, files


def test_archive_moves_generation_and_intermediates(baked):
    config, toml, files = baked
    public, build = config.public_dir, config.build_dir
    assert main(["-q", "-c", str(toml), "archive", "v1"]) == 0
    generation = {k: v for k, v in files.items() if k.startswith(("example-", "snippet", "snippets."))}
    assert tree_bytes(public / "v1") == generation
    left = tree_bytes(public)
    assert set(left) == {"index.html", "assets/style.0123456789.css"} | {f"v1/{k}" for k in generation}
    assert sorted(os.listdir(build / "archive" / "v1")) == ["raw", "text", "upscaled"]
    assert (build / "archive" / "v1" / "raw" / "manifest.json").is_file()
    assert not (build / "raw").exists() and not (build / "text").exists()
    assert (build / "site" / "manifest.json").is_file()  # not a generation folder: stays


def test_archive_refuses_an_existing_version_and_bad_names(baked, capsys):
    config, toml, files = baked
    (config.public_dir / "v1").mkdir()
    assert main(["-q", "-c", str(toml), "archive", "v1"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert tree_bytes(config.public_dir)["example-0.jpg"] == files["example-0.jpg"]  # nothing moved
    for bad in ("../v1", "assets", ".hidden", "v 1"):
        with pytest.raises(BakeryError, match="invalid version name"):
            archive(config, bad)


def test_nothing_to_archive_is_an_error(tmp_path):
    config = load_config(write_project(tmp_path, ""))
    with pytest.raises(BakeryError, match="nothing to archive"):
        archive(config, "v1")


def test_interrupted_archive_resumes_and_never_shows_a_partial_version(baked, monkeypatch):
    config, toml, files = baked
    public = config.public_dir
    real_rename, calls = os.rename, []

    def crashing_rename(src, dst):
        calls.append(src)
        if len(calls) == 7:
            raise OSError("simulated crash")
        real_rename(src, dst)

    monkeypatch.setattr(archive_mod.os, "rename", crashing_rename)
    with pytest.raises(OSError, match="simulated crash"):
        archive(config, "v1")
    assert not (public / "v1").exists()  # only the staging folder, never a half version
    assert (public / ".archiving-v1").is_dir()
    assert all(".archiving" not in f.rel for f in scan_tree(public))  # deploys skip the staging folder

    monkeypatch.setattr(archive_mod.os, "rename", real_rename)
    counts = archive(config, "v1")
    assert counts["images"] == 4 and counts["snippets"] == 4
    assert not (public / ".archiving-v1").exists()
    generation = {k for k in files if k.startswith(("example-", "snippet"))}
    assert set(tree_bytes(public / "v1")) == generation
    assert sorted(os.listdir(config.build_dir / "archive" / "v1")) == ["raw", "text", "upscaled"]
