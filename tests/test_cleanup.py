"""`bakery clean` / `make clean`: the current generation's outputs go, archived generations stay."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bakery.cli import main
from bakery.config import load_config
from bakery.lock import project_lock
from conftest import MINIMAL_BANDS, REPO, write_project


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def bake_generation(build: Path, public: Path, label: str) -> None:
    """What a bake leaves: stage folders, manifests, pages, pairs, hashed assets."""
    for stage in ("raw", "upscaled", "compress", "text", "site", "deploy"):
        (build / stage).mkdir(parents=True, exist_ok=True)
        (build / stage / "manifest.json").write_text(f'{{"generation": "{label}"}}')
    (build / "rsyncd.conf").write_text("[waifus]\n")
    (public / "assets").mkdir(parents=True, exist_ok=True)
    (public / "assets" / "style.0123456789.css").write_text("body{}")
    for i in range(3):
        (public / f"example-{i}.jpg").write_bytes(f"{label} jpeg {i}".encode())
        (public / f"snippet-{i}.txt").write_text(f"{label} snippet {i}")
    (public / "index.html").write_text(f"<html>{label}</html>")


@pytest.fixture
def archived_project(tmp_path):
    """Generation v1 archived with `bakery archive v1` (plus an interrupted archive of v2's
    predecessor left in public/.archiving-v0/), then generation 2 baked."""
    toml = write_project(tmp_path, MINIMAL_BANDS)
    build, public = tmp_path / "build", tmp_path / "public"
    bake_generation(build, public, "one")
    assert main(["-q", "-c", str(toml), "archive", "v1"]) == 0
    (public / ".archiving-v0").mkdir()
    (public / ".archiving-v0" / "example-9.jpg").write_bytes(b"the only copy")
    bake_generation(build, public, "two")
    archives = {"public/v1": tree(public / "v1"), "build/archive": tree(build / "archive"),
                "public/.archiving-v0": tree(public / ".archiving-v0")}
    assert archives["public/v1"] and archives["build/archive"]
    return toml, archives


def assert_only_archives_left(root: Path, archives: dict) -> None:
    assert sorted(os.listdir(root / "public")) == [".archiving-v0", "v1"]
    assert sorted(os.listdir(root / "build")) == ["archive"]  # no stage folder, no lock file
    for where, files in archives.items():
        assert tree(root / where) == files


def test_clean_keeps_archived_generations(archived_project, capsys):
    toml, archives = archived_project
    root = toml.parent.parent
    capsys.readouterr()
    assert main(["-c", str(toml), "clean"]) == 0
    assert_only_archives_left(root, archives)
    said = capsys.readouterr().err
    assert "kept the archived generation(s)" in said and str(root / "public" / "v1") in said
    assert "--archives" in said
    # The next bake starts from scratch, and a second clean is a no-op.
    assert main(["-q", "-c", str(toml), "clean"]) == 0
    assert_only_archives_left(root, archives)


def test_clean_archives_deletes_everything_on_purpose(archived_project):
    toml, _ = archived_project
    root = toml.parent.parent
    assert main(["-q", "-c", str(toml), "clean", "--archives"]) == 0
    assert not (root / "build").exists() and not (root / "public").exists()


def test_clean_of_a_fresh_project_creates_nothing(tmp_path):
    toml = write_project(tmp_path, MINIMAL_BANDS)
    assert main(["-q", "-c", str(toml), "clean"]) == 0
    assert not (tmp_path / "build").exists() and not (tmp_path / "public").exists()


def test_clean_unlinks_symlinks_without_following_them(tmp_path):
    toml = write_project(tmp_path, MINIMAL_BANDS)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the bakery's")
    bake_generation(tmp_path / "build", tmp_path / "public", "one")
    (tmp_path / "public" / "linked-file.jpg").symlink_to(outside / "keep.txt")
    (tmp_path / "build" / "linked-folder").symlink_to(outside, target_is_directory=True)
    assert main(["-q", "-c", str(toml), "clean"]) == 0
    assert (outside / "keep.txt").read_text() == "not the bakery's"
    assert not (tmp_path / "build").exists() and not (tmp_path / "public").exists()


def test_clean_honours_the_configured_folders(tmp_path):
    toml = write_project(tmp_path, '[site]\nbuild_dir = "out/b"\npublic_dir = "out/p"\n' + MINIMAL_BANDS,
                         with_site_dirs=False)
    config = load_config(toml)
    bake_generation(config.build_dir, config.public_dir, "one")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "mine.txt").write_text("not in this project's build_dir")
    assert main(["-q", "-c", str(toml), "clean"]) == 0
    assert not config.build_dir.exists() and not config.public_dir.exists()
    assert (tmp_path / "build" / "mine.txt").is_file()


def test_clean_refuses_while_a_bake_holds_the_project(archived_project, capsys):
    toml, _ = archived_project
    root = toml.parent.parent
    before = tree(root)
    with project_lock(root / "build", "bakery bake"):
        assert main(["-q", "-c", str(toml), "clean"]) == 2
    assert "another bakery run is working on this project" in capsys.readouterr().err
    assert tree(root) == {**before, "build/bakery.lock": (root / "build/bakery.lock").read_bytes()}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_clean_keeps_archives_and_make_distclean_does_not(archived_project):
    toml, archives = archived_project
    root = toml.parent.parent
    shutil.copy(REPO / "Makefile", root / "Makefile")
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "bakery").is_file():
        pytest.skip(f"no bakery script next to {sys.executable}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's bakery, as the suite runs it
    run = subprocess.run(["make", "-s", "clean", f"BIN={bin_dir}", "CONFIG=content/site.toml"], cwd=root,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert_only_archives_left(root, archives)
    run = subprocess.run(["make", "-s", "distclean", f"BIN={bin_dir}", "CONFIG=content/site.toml"], cwd=root,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert not (root / "build").exists() and not (root / "public").exists()
