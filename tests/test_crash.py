"""Crash and corruption: a small real bake killed with SIGKILL at chosen items of every stage,
and finished outputs truncated, altered or replaced; each rerun must end exactly where an
uninterrupted bake ends, in public/ and in build/ (manifests included).

The kills come from the deterministic hook in bakery/testhook.py (BAKERY_TEST_KILL_AT), not
from a timer: `<stage>:<ID>` fires when that ID's output is in place but not yet journaled,
`rename:<name>` when a temp file is written but not yet renamed over <name>.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from bake_support import bakery_process, copy_project, differences, project_state, tiny_bake_project
from bakery.cli import main
from text_support import build_tiny_gpt2

pytestmark = pytest.mark.slow

IDS = range(6)
# One bake, killed in turn at each point below and resumed by the next run; at least one point
# per stage, including the renames of a JPEG and of index.html (the site stage's last write).
KILL_POINTS = ("generate:2", "upscale:3", "compress:1", "rename:example-4.jpg", "text:1", "rename:index.html")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny model and one uninterrupted bake of the tiny project."""
    root = tmp_path_factory.mktemp("crash")
    model = build_tiny_gpt2(root / "gpt2")
    config = tiny_bake_project(root / "reference", model, ids="0-5")
    started = time.monotonic()
    result = bakery_process(config, "bake")
    assert result.returncode == 0, result.stderr
    print(f"\nuninterrupted bake: {time.monotonic() - started:.1f} s")
    return root, model, project_state(root / "reference")


def test_sigkill_at_every_stage_then_rerun_equals_uninterrupted_bake(reference, tmp_path):
    root, model, expected = reference
    config = tiny_bake_project(tmp_path / "killed", model, ids="0-5")
    project = tmp_path / "killed"
    figures = []
    for point in KILL_POINTS:
        started = time.monotonic()
        result = bakery_process(config, "bake", kill_at=point)
        figures.append(f"{point}: killed after {time.monotonic() - started:.1f} s")
        assert result.returncode == -signal.SIGKILL, f"{point} was never reached: {result.stderr}"
        if point.startswith("rename:"):  # killed mid-write: the temp file is there
            assert list(project.rglob(f".tmp-{point.split(':')[1]}.*")), point
    started = time.monotonic()
    final = bakery_process(config, "bake")
    figures.append(f"final rerun: {time.monotonic() - started:.1f} s")
    print("\n" + "\n".join(figures))
    assert final.returncode == 0, final.stderr
    got = project_state(project)
    assert not [p for p in got if "/.tmp-" in p or p.endswith("journal.jsonl")]
    assert differences(expected, got) == []


def damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "alter":  # same size, one byte changed: only a hash notices
        middle = len(data) // 2
        swap = b"x" if data[middle:middle + 1] != b"x" else b"y"
        path.write_bytes(data[:middle] + swap + data[middle + 1:])
    elif path.suffix == ".txt":  # garbage that still reads as a snippet
        path.write_text("Garbage that is not what the model wrote, but long enough.\n", encoding="utf-8")
    else:
        path.write_bytes(os.urandom(len(data)))


HOWS = ("truncate", "alter", "garbage")


def published_ids(public) -> set[int]:
    html = (public / "index.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="bakery-data">(.*?)</script>', html, re.S).group(1))
    return {i for band in data["bands"] for first, last in band["ranges"] for i in range(first, last + 1)}


def test_damaged_outputs_are_redone_and_never_published(reference, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root, _, expected = reference
    # Two copies, so that no damaged file lies downstream of another damaged file.
    first = copy_project(root / "reference", tmp_path / "a")
    project = tmp_path / "a"
    for i, how in zip((0, 1, 2), HOWS):
        damage(project / f"build/raw/example-{i}.png", how)
        damage(project / f"build/text/snippet-{i}.txt", how)
    for i, how in zip((3, 4, 5), HOWS):
        damage(project / f"build/upscaled/example-{i}.png", how)
    assert main(["-q", "-c", str(first), "site"]) == 0
    assert published_ids(project / "public") == {3, 4, 5}  # damaged snippets 0-2 are not published
    assert main(["-q", "-c", str(first), "bake"]) == 0
    assert differences(expected, project_state(project)) == []

    second = copy_project(root / "reference", tmp_path / "b")
    project = tmp_path / "b"
    for i, how in zip((0, 1, 2), HOWS):
        damage(project / f"public/example-{i}.jpg", how)
    for i, how in zip((3, 4, 5), HOWS):
        damage(project / f"build/text/snippet-{i}.txt", how)
    assert main(["-q", "-c", str(second), "site"]) == 0
    assert published_ids(project / "public") == set()
    assert main(["-q", "-c", str(second), "bake"]) == 0
    assert differences(expected, project_state(project)) == []
    assert published_ids(project / "public") == set(IDS)
