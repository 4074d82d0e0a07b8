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


# stage → (output folder, file name pattern, manifest, manifest key, journal)
OUTPUTS = {
    "generate": ("build/raw", "example-{}.png", "build/raw/manifest.json", "images", "build/raw/journal.jsonl"),
    "upscale": ("build/upscaled", "example-{}.png", "build/upscaled/manifest.json", "done",
                "build/upscaled/journal.jsonl"),
    "compress": ("public", "example-{}.jpg", "build/compress/manifest.json", "done", "build/compress/journal.jsonl"),
    "text": ("build/text", "snippet-{}.txt", "build/text/manifest.json", "snippets", "build/text/journal.jsonl"),
}


def recorded_outputs(project) -> dict[str, int]:
    """Every output its stage has recorded (manifest or journal) → its mtime_ns."""
    from bakery.verify import stage_records

    found = {}
    for folder, name, manifest, key, journal in OUTPUTS.values():
        records = stage_records(project / manifest, key, project / journal) or {}
        for i in records:
            path = project / folder / name.format(i)
            if path.is_file():
                found[path.relative_to(project).as_posix()] = path.stat().st_mtime_ns
    return found


def test_sigkill_at_every_stage_then_rerun_equals_uninterrupted_bake(reference, tmp_path):
    root, model, expected = reference
    config = tiny_bake_project(tmp_path / "killed", model, ids="0-5")
    project = tmp_path / "killed"
    figures, recorded = [], {}
    for point in KILL_POINTS + (None,):
        started = time.monotonic()
        result = bakery_process(config, "bake", kill_at=point)
        figures.append(f"{point or 'final rerun'}: {'killed after' if point else 'done in'} "
                       f"{time.monotonic() - started:.1f} s")
        # item 6: nothing recorded before the kill was done again by this run
        now = recorded_outputs(project)
        assert [p for p, mtime in recorded.items() if now.get(p) != mtime] == [], point
        recorded = now
        if point is None:
            break
        assert result.returncode == -signal.SIGKILL, f"{point} was never reached: {result.stderr}"
        stage, _, item = point.partition(":")
        if stage == "rename":  # killed mid-write: the temp file is there
            assert list(project.rglob(f".tmp-{item}.*")), point
        else:  # killed with the output in place and not yet recorded
            folder, name = OUTPUTS[stage][:2]
            assert (project / folder / name.format(item)).is_file()
            assert f"{folder}/{name.format(item)}" not in recorded
    print("\n" + "\n".join(figures))
    assert result.returncode == 0, result.stderr
    got = project_state(project)
    assert not [p for p in got if "/.tmp-" in p or p.endswith("journal.jsonl")]
    assert differences(expected, got) == []


def damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "alter":  # same size, one ASCII letter changed (still UTF-8): only a hash notices
        middle = next((i for i in range(len(data) // 2, len(data)) if data[i:i + 1].isalpha()), len(data) // 2)
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
    # Nothing verifies: the site refuses to publish, unless asked to, and then publishes nothing.
    assert main(["-q", "-c", str(second), "site"]) == 2
    assert main(["-q", "-c", str(second), "site", "--allow-empty"]) == 0
    assert published_ids(project / "public") == set()
    assert main(["-q", "-c", str(second), "bake"]) == 0
    assert differences(expected, project_state(project)) == []
    assert published_ids(project / "public") == set(IDS)
