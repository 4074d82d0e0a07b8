"""Which Ray head `--ray` joins, and what happens when it is not there (issue 23, item 2).

Every source of the address gets the reachability check, before Ray's own retry loop can
start: an explicit `--ray HOST:PORT`, `$RAY_ADDRESS`, and the head that the last
`ray start --head` recorded in Ray's ray_current_cluster file (which `--ray` with no address
joins). A head that goes away mid-bake ends the command within a bounded time, with one line;
what was written stays and a rerun resumes.

The bakery runs in child processes with a timeout, so a check that failed to catch a dead head
fails the test instead of hanging it. Each test gets its own RAY_TMPDIR: no test reads or
writes the machine's /tmp/ray, and the test head is stopped by its own process IDs.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bake_support import bakery_process
from bakery.scale.executor import find_head, quiet_ray_notices
from tests.conftest import FIXTURES, write_project

ray = pytest.importorskip("ray")

# Ray resolves a 127.0.0.1 address to the machine's outward IP, where nothing listens; with this
# variable at 0 the driver keeps the loopback address, like the test head (see tests/test_ray.py).
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Far longer than the bakery needs; Ray's own retry loop would outlast it (it ran for minutes).
BOUND_S = 60


def dead_port() -> int:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_tmpdir(monkeypatch):
    """A private Ray temp folder (short: Ray's socket paths must fit in 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(folder))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def project(tmp_path, seeds="0-3"):
    return write_project(tmp_path, f"""
        [images]
        model = "{FIXTURES / 'stylegan2' / 'stylegan2_tf1_synthetic_r64.pkl'}"
        batch_size = 2
        [[images.bands]]
        seeds = "{seeds}"
        psi = 0.7
        noise = "seeded"
    """)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_the_address_comes_from_the_flag_then_ray_address_then_the_last_ray_start(ray_tmpdir, monkeypatch):
    recorded = ray_tmpdir / "ray" / "ray_current_cluster"
    assert find_head("auto").address is None  # nothing recorded: a local cluster for the command
    assert find_head("auto").init_address is None
    recorded.parent.mkdir()
    recorded.write_text("10.0.0.7:6379\n")
    assert find_head("").address == "10.0.0.7:6379" and str(recorded) in find_head("").name
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.8:6379")
    assert find_head("auto").address == "10.0.0.8:6379" and "$RAY_ADDRESS" in find_head("auto").name
    head = find_head("10.0.0.9:6379")
    assert (head.address, head.init_address) == ("10.0.0.9:6379", "10.0.0.9:6379")
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert find_head("auto").address is None


def test_dead_ray_address_is_one_line_not_ray_retrying(tmp_path, ray_tmpdir):
    port = dead_port()
    started = time.monotonic()
    result = bakery_process(project(tmp_path), "generate", "--ray", timeout=BOUND_S,
                            env={"RAY_ADDRESS": f"127.0.0.1:{port}"})
    assert result.returncode == 1, result.stderr
    assert error_lines(result) == [
        f"bakery: error: --ray: $RAY_ADDRESS 127.0.0.1:{port}: no Ray head answers there (Connection refused); "
        "start one with `ray start --head`, or unset RAY_ADDRESS"], result.stderr
    assert time.monotonic() - started < 30
    assert not list(tmp_path.glob("build/raw/*.png"))


def test_stale_ray_current_cluster_is_one_line_naming_the_file(tmp_path, ray_tmpdir):
    """`ray start --head` recorded a head that has since gone (killed, not `ray stop`ped)."""
    port = dead_port()
    recorded = ray_tmpdir / "ray" / "ray_current_cluster"
    recorded.parent.mkdir()
    recorded.write_text(f"127.0.0.1:{port}")
    result = bakery_process(project(tmp_path), "generate", "--ray", timeout=BOUND_S)
    assert result.returncode == 1, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"bakery: error: --ray: the head in {recorded} (127.0.0.1:{port}, "), lines
    assert "no Ray head answers there" in lines[0] and f"delete {recorded}" in lines[0], lines


@pytest.mark.slow
def test_a_port_that_answers_but_is_no_ray_head_is_bounded(tmp_path, ray_tmpdir):
    """Something accepts TCP connections there but never speaks Ray: ray.init would retry for
    ever; the bakery gives up after INIT_LIMIT_S (8 s here instead of 120) with one line."""
    import subprocess
    import sys

    from tests.conftest import REPO

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        code = ("import bakery.scale.executor as ex\n"
                "from bakery.scale.config import RayConfig\n"
                "ex.INIT_LIMIT_S = 8\n"
                f"ex.RayExecutor('127.0.0.1:{port}', RayConfig(None, 1.0, True, 3, 2), quiet=True)\n")
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=BOUND_S,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"bakery: error: --ray 127.0.0.1:{port}: no connection to the Ray cluster within 8 s (Ray keeps retrying); "
        "check that a Ray head of this version listens there (docs/scale-out.md)")
    assert time.monotonic() - started < 40


def test_rays_own_notices_reach_the_terminal_only_with_v(monkeypatch, capfd):
    """Ray's token-authentication notice and the cluster's error reports (a raylet's last log
    lines) leaked into the bakery's output (issue 23, item 9)."""
    import logging

    import ray._private.worker as worker
    from ray._private.authentication import authentication_token_setup as tokens

    printer = worker.print_to_stdstream
    monkeypatch.setattr(worker, "print_to_stdstream", printer)  # put back after the test
    notices = logging.getLogger(tokens.__name__)
    monkeypatch.setattr(notices, "filters", list(notices.filters))
    report = {"lines": ["Raylet is terminated. Termination is unexpected."], "pid": "raylet", "is_err": False}

    quiet_ray_notices(ray, verbose=True)
    assert worker.print_to_stdstream is printer  # -v: Ray prints its reports as it always does
    quiet_ray_notices(ray, verbose=False)
    tokens._warn_token_auth_enabled()
    worker.print_to_stdstream(report, ignore_prefix=False)
    out, err = capfd.readouterr()
    assert "Token authentication" not in out + err and "Raylet is terminated" not in out + err


@pytest.mark.slow
def test_head_stopped_mid_bake_ends_with_one_line_and_a_rerun_resumes(tmp_path, ray_tmpdir):
    """A one-node cluster (head only) started here; the driver pauses at its 10th image (the
    testhook's pause point), the head's processes are killed, and the driver goes on."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    address = cluster.address
    config = project(tmp_path, seeds="0-199")
    flag = tmp_path / "paused"
    killed = {}

    def stop_head_when_paused():
        deadline = time.monotonic() + 300
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cluster.head_node.kill_all_processes(check_alive=False, allow_graceful=False)
        killed["at"] = time.monotonic()
        flag.unlink(missing_ok=True)  # the driver goes on, into a cluster with no head

    stopper = threading.Thread(target=stop_head_when_paused, daemon=True)
    stopper.start()
    try:
        result = bakery_process(config, "generate", "--ray", address, timeout=300, env={
            **LOOPBACK, "BAKERY_TEST_PAUSE_AT": "generate:10", "BAKERY_TEST_PAUSE_FILE": str(flag)})
        ended = time.monotonic()
    finally:
        stopper.join(timeout=10)
        cluster.shutdown()
    assert "at" in killed, f"the driver never reached generate:10: {result.stderr}"
    assert result.returncode == 1, result.stderr
    assert error_lines(result) == [
        f"bakery: error: --ray: the Ray cluster's head {address} stopped answering during generate; "
        "stopped (what was written is kept: rerun to continue)"], result.stderr
    assert ended - killed["at"] < 30, f"took {ended - killed['at']:.1f} s after the head stopped"
    written = sorted(tmp_path.glob("build/raw/example-*.png"))
    assert 10 <= len(written) < 200
    # the rerun (here without Ray) keeps those and renders only the rest
    before = {p.name: p.stat().st_mtime_ns for p in written}
    rerun = bakery_process(config, "generate", timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(tmp_path.glob("build/raw/example-*.png"))) == 200
    assert all((tmp_path / "build" / "raw" / name).stat().st_mtime_ns == mtime for name, mtime in before.items())
    assert not list(tmp_path.rglob(".tmp-*"))
