"""One count of usable CPUs (bakery.cpus.usable_cpus), and every stage and engine follows it:
a Slurm allocation or `taskset` restricts the affinity mask, not os.cpu_count()."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from bakery import cpus
from bakery.cpus import usable_cpus

BAKERY = Path(__file__).resolve().parents[1] / "bakery"
MACHINE = 64  # what os.cpu_count() claims in these tests
ALLOWED = {0, 1, 2, 3}  # the mask: 4 of them


@pytest.fixture
def four_of_64(monkeypatch):
    """A process allowed 4 CPUs of a 64-CPU machine, as under `srun -c 4`."""
    monkeypatch.setattr(os, "cpu_count", lambda: MACHINE)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(ALLOWED), raising=False)


def test_usable_cpus_is_the_affinity_mask(four_of_64):
    assert usable_cpus() == 4


def test_without_affinity_masks_it_is_the_machines_count(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert usable_cpus() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "cannot tell"
    assert usable_cpus() == 1


def test_text_threads_default_follows_the_mask(four_of_64):
    from bakery.text.config import default_threads

    assert default_threads() == 2  # half the usable CPUs, not 32 of the machine's 64


def test_upscale_threads_follow_the_mask(four_of_64):
    from bakery.upscale.ncnn_engine import default_threads
    from bakery.upscale.stage import upscale_plan

    cfg = SimpleNamespace(method="waifu2x", threads=0, workers=0, batch_size=4)
    assert upscale_plan(cfg, has_gpu=False, jobs=10) == (1, 4, 1)
    assert upscale_plan(SimpleNamespace(**{**vars(cfg), "workers": 2}), has_gpu=False, jobs=10) == (2, 2, 1)
    assert upscale_plan(cfg, has_gpu=True, jobs=10) == (1, 4, 4)
    assert default_threads() == 4  # ncnn's threads when the caller gives none


def test_upscale_and_compress_pools_follow_the_mask(four_of_64, monkeypatch, tmp_path):
    """lanczos upscaling and JPEG encoding run one thread per usable CPU ([jpeg] workers = 0)."""
    import concurrent.futures as cf

    from PIL import Image

    from bakery.cli import main
    from bakery.upscale import stage

    sizes = []

    class Recording(cf.ThreadPoolExecutor):
        def __init__(self, max_workers=None, *args, **kwargs):
            sizes.append(max_workers)
            super().__init__(1, *args, **kwargs)

    monkeypatch.setattr(stage.cf, "ThreadPoolExecutor", Recording)
    toml = tmp_path / "site.toml"
    toml.write_text('[images]\n[[images.bands]]\nseeds = "0-1"\npsi = 0.7\n[upscale]\nmethod = "lanczos"\n')
    raw = tmp_path / "build" / "raw"
    raw.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (8, 8), (i * 40, 10, 10)).save(raw / f"example-{i}.png")
    assert main(["-q", "-c", str(toml), "upscale"]) == 0 and main(["-q", "-c", str(toml), "compress"]) == 0
    assert len(sizes) == 2 and set(sizes) == {4}
    assert sorted(p.name for p in (tmp_path / "public").glob("example-*.jpg")) == ["example-0.jpg", "example-1.jpg"]


def test_tensorflow_pools_follow_the_mask(four_of_64, monkeypatch):
    """import_tf sizes both of TensorFlow's pools from the mask (a stand-in module records them)."""
    from bakery.images import tfsetup

    calls = {}
    threading = SimpleNamespace(set_intra_op_parallelism_threads=lambda n: calls.setdefault("intra", n),
                                set_inter_op_parallelism_threads=lambda n: calls.setdefault("inter", n))
    config = SimpleNamespace(threading=threading, list_physical_devices=lambda kind: [],
                             experimental=SimpleNamespace(enable_tensor_float_32_execution=lambda on: None))
    fake = types.ModuleType("tensorflow")
    fake.config, fake.__version__ = config, "stand-in"
    monkeypatch.setitem(sys.modules, "tensorflow", fake)
    monkeypatch.setattr(tfsetup, "_TF", None)
    assert tfsetup.import_tf() is fake
    assert calls == {"intra": 4, "inter": 4}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity masks on this platform")
def test_a_real_mask_set_by_the_parent_is_followed(tmp_path):
    """The real system call: a child started on one CPU (as taskset -c N would) counts one."""
    one = min(os.sched_getaffinity(0))
    code = ("import os, types; from bakery.cpus import usable_cpus; "
            "from bakery.text.config import default_threads; from bakery.upscale.stage import upscale_plan; "
            "cfg = types.SimpleNamespace(method='waifu2x', threads=0, workers=0, batch_size=1); "
            "print(usable_cpus(), default_threads(), upscale_plan(cfg, False, 5)[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, {one}), env=os.environ).stdout
    assert out.split() == ["1", "1", "1"]


def test_nothing_else_counts_cpus():
    """Only bakery/cpus.py asks the OS: a new os.cpu_count() elsewhere would ignore the mask again."""
    offenders = []
    for path in sorted(BAKERY.rglob("*.py")):
        if path == Path(cpus.__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("cpu_count", "sched_getaffinity", "process_cpu_count"):
                offenders.append(f"{path.relative_to(BAKERY.parent)}:{node.lineno} {node.attr}")
    assert offenders == []
