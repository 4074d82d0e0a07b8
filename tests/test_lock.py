"""The project lock (one bakery run per project: a second says who holds it and exits 2, or
waits with --wait) and the one sweep of stale temp files over every folder the bakery writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from bakery.cli import main
from bakery.config import load_config
from tests.conftest import REPO, make_pairs

HOLDER = """
import sys
from pathlib import Path
from bakery.lock import project_lock
with project_lock(Path(sys.argv[1]), "bakery bake"):
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def holder(project):
    """A process holding the project's lock until its stdin is closed."""
    build = load_config(project).build_dir
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(build)], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.stdin.close()
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("command", [["site"], ["text"], ["compress"], ["generate"], ["deploy", "rsync"],
                                     ["bake"]])
def test_second_run_names_the_holder_and_exits_2(project, holder, capsys, command):
    assert main(["-q", "-c", str(project), *command]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"pid {holder.pid} (bakery bake), since 20" in err and "bakery.lock" in err and "--wait" in err
    public = load_config(project).public_dir
    assert not (public / "index.html").exists()


def test_wait_waits_for_the_holder(project, holder, capsys):
    threading.Timer(1.0, holder.stdin.close).start()
    started = time.monotonic()
    assert main(["-c", str(project), "site", "--wait", "--allow-empty"]) == 0
    assert time.monotonic() - started >= 0.9
    assert "waiting for the project lock" in capsys.readouterr().err
    assert (load_config(project).public_dir / "index.html").is_file()


def test_a_killed_holder_leaves_no_lock_behind(project, holder):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert main(["-q", "-c", str(project), "site", "--allow-empty"]) == 0


def test_one_sweep_removes_temp_files_in_every_folder_the_bakery_writes_and_nowhere_else(project):
    config = load_config(project)
    make_pairs(config, ids=[0, 1])
    build, public, root = config.build_dir, config.public_dir, project.parent.parent
    ours = [build, public, public / "assets"] + [build / d for d in
                                                 ("raw", "upscaled", "compress", "text", "site", "deploy", "figures")]
    others = [root, root / "content", public / "v1", build / "archive" / "v1" / "raw"]
    for folder in ours + others:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".tmp-example-9.jpg.x1y2").write_bytes(b"half")
    (public / "keep.tmp-not-ours").write_bytes(b"mine")
    assert main(["-q", "-c", str(project), "site"]) == 0
    assert [f for f in ours if list(f.glob(".tmp-*"))] == []
    assert all((f / ".tmp-example-9.jpg.x1y2").is_file() for f in others)
    assert (public / "keep.tmp-not-ours").is_file()
