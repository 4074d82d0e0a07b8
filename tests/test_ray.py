"""`--ray`: a small 3-band bake (every stage on) on a real two-node Ray cluster on 127.0.0.1,
started and stopped here (ray.cluster_utils.Cluster: a head node and a worker node, each a
set of real raylet and worker processes with one CPU):

- the bake equals the same config baked without Ray, byte for byte;
- a worker process on the worker node dies mid-batch (SIGKILL by its own PID, at a chosen
  point: bakery/testhook.py's `ray:<stage>`, set only in that node's environment) and the bake
  still finishes with identical output;
- the driver is killed with SIGKILL mid-bake; the rerun converges to identical output with no
  partial files.
"""

from __future__ import annotations

import signal

import pytest

from bake_support import assert_baked, bakery_process, differences, project_state, three_band_project
from text_support import build_tiny_gpt2

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.slow

KILL = "BAKERY_TEST_KILL_AT"
TIMEOUT = 900


@pytest.fixture(scope="module")
def cluster():
    """A head node and one worker node on 127.0.0.1 (no dashboard), shut down after the module."""
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    yield cluster, worker
    cluster.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    model = build_tiny_gpt2(root / "gpt2")
    config = three_band_project(root / "local", model)
    assert_baked(bakery_process(config, "bake", timeout=TIMEOUT))
    return model, project_state(root / "local")


# Ray resolves a 127.0.0.1 address to the machine's outward IP, where nothing listens; with this
# variable at 0 the driver keeps the loopback address, like the test cluster's nodes.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def ray_bake(config, address, **kwargs):
    return bakery_process(config, "bake", "--ray", address, timeout=TIMEOUT, env=LOOPBACK, **kwargs)


def assert_clean(project, expected) -> None:
    got = project_state(project)
    assert not [p for p in got if "/.tmp-" in p or p.endswith("journal.jsonl")]
    assert differences(expected, got) == []


def test_ray_bake_equals_the_local_bake(cluster, reference, tmp_path):
    model, expected = reference
    config = three_band_project(tmp_path / "ray", model)
    assert_baked(ray_bake(config, cluster[0].address))
    assert_clean(tmp_path / "ray", expected)


def test_driver_killed_mid_bake_then_rerun_converges(cluster, reference, tmp_path):
    model, expected = reference
    config = three_band_project(tmp_path / "ray", model)
    for point in ("generate:3", "text:6"):  # the driver: an output in place, its record not yet
        result = ray_bake(config, cluster[0].address, kill_at=point)
        assert result.returncode == -signal.SIGKILL, f"{point} was never reached: {result.stderr}"
    assert_baked(ray_bake(config, cluster[0].address))
    assert_clean(tmp_path / "ray", expected)


def test_worker_node_process_killed_mid_batch(cluster, reference, tmp_path):
    """Runs last: it swaps the clean worker node for one whose workers die at their first
    generate and text batch."""
    model, expected = reference
    head, clean = cluster
    head.remove_node(clean)
    head.add_node(num_cpus=1, node_ip_address="127.0.0.1", env_vars={KILL: "ray:generate,ray:text"})
    head.wait_for_nodes()
    config = three_band_project(tmp_path / "ray", model)
    result = ray_bake(config, head.address)
    assert_baked(result)
    assert "a generate worker died" in result.stderr and "a text worker died" in result.stderr, result.stderr
    assert_clean(tmp_path / "ray", expected)
