"""Ray scale-out on this machine: the same bake run locally, and with `--ray` on 1 and 2 workers.

For `bakery generate` (the embedded 256 px StyleGAN 2) and `bakery text` (the embedded
SmolLM2-135M), each in a fresh project, timed from outside the process (start-up, Ray's local
cluster, model loads and writes included):

- items/s end to end, and steady items/s (from the first finished item to the last, by the
  outputs' mtimes: what a long bake converges to);
- the Ray overhead at 1 worker (num_cpus = 1: one thread) against the local run on one core
  (taskset -c 0, OMP_NUM_THREADS=1: the same CPU budget), measured side by side (target
  ≤ 15 %), end to end and steady; and against the default local run on both cores;
- the time from `bakery ... --ray` to its first finished item.

`--ray` here starts a local Ray cluster inside the driver (ray.init()'s default), with
[ray] workers = 1 or 2 and num_cpus = 1 (so 2 workers use both cores with one thread each,
where the local run uses both cores from one process).

    python bench/bench_ray.py [--images 96] [--snippets 12] [--only images|text]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROMPT = "Write the plot summary of the first episode of a new anime series, in two sentences."


IMAGE_BATCH, TEXT_BATCH = 4, 6


def project(root: Path, count: int, workers: int | None) -> Path:
    (root / "content" / "prompts").mkdir(parents=True)
    (root / "content" / "prompts" / "plot.txt").write_text(PROMPT, encoding="utf-8")
    ray = f"\n[ray]\nworkers = {workers}\nnum_cpus = 1\n" if workers else ""
    config = root / "content" / "site.toml"
    config.write_text(f"""
[images]
model = "embedded"
batch_size = {IMAGE_BATCH}
[[images.bands]]
seeds = "0-{count - 1}"
psi = 0.7

[text]
max_attempts = 1
[text.generate]
model = "embedded"
chat = true
batch_size = {TEXT_BATCH}
max_new_tokens = 60
[text.clean]
min_chars = 20
{ray}""", encoding="utf-8")
    return config


def run(config: Path, command: str, ray: bool, outputs: str, count: int, batch: int, one_core: bool = False) -> dict:
    """Wall time, time to the first output, and the steady rate: the items after the first
    batch over the time from the first output to the last (a batch lands all at once)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, "-m", "bakery", "-c", str(config), command] + (["--ray"] if ray else [])
    if one_core:  # the CPU budget of one Ray worker with num_cpus = 1: one core, one thread
        env["OMP_NUM_THREADS"] = "1"
        args = ["taskset", "-c", "0"] + args
    folder = config.parent.parent
    started = time.time()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while proc.poll() is None:
        if first is None and any(folder.glob(outputs)):
            first = time.time() - started
        time.sleep(0.05)
    wall = time.time() - started
    err = proc.stderr.read()
    if proc.returncode not in (0, 1):  # 1: a snippet failed its cleaning rules; the rest count
        raise SystemExit(f"{' '.join(args)} failed:\n{err[-2000:]}")
    times = sorted(p.stat().st_mtime for p in folder.glob(outputs))
    steady = (len(times) - batch) / (times[-1] - times[0]) if len(times) > batch and times[-1] > times[0] else 0.0
    return {"wall": wall, "first": first if first is not None else wall, "rate": count / wall, "steady": steady,
            "made": len(times)}


def bench(stage: str, command: str, outputs: str, count: int, batch: int) -> None:
    results = {}
    for mode, workers in (("local", None), ("local-1core", None), ("ray-1", 1), ("ray-2", 2)):
        with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
            config = project(Path(tmp), count, workers)
            results[mode] = r = run(config, command, workers is not None, outputs, count, batch,
                                    one_core=mode == "local-1core")
        unit = "img/s" if stage == "images" else "snippets/s"
        print(f"{stage} {mode}: {r['rate']:.3f} {unit} end to end ({count} in {r['wall']:.1f} s), "
              f"steady {r['steady']:.3f} {unit}, first item after {r['first']:.1f} s", flush=True)
    local, one, two = results["local"], results["ray-1"], results["ray-2"]
    for name, base in (("", results["local-1core"]), ("_vs_2core_local", local)):
        print(f"{stage}_ray1_overhead_end_to_end{name}: {100 * (one['wall'] / base['wall'] - 1):.1f} % "
              f"(ray-1 wall / local wall = {one['wall'] / base['wall']:.2f}x; target ≤ 15 %)")
        if base["steady"] and one["steady"]:
            print(f"{stage}_ray1_overhead_steady{name}: {100 * (base['steady'] / one['steady'] - 1):.1f} % "
                  f"(ray-1 steady rate / local = {one['steady'] / base['steady']:.2f}x; target ≤ 15 %)")
    print(f"{stage}_ray2_speedup: {local['wall'] / two['wall']:.2f} x end to end, "
          f"{two['steady'] / local['steady'] if local['steady'] else 0:.2f} x steady (vs local)")
    print(f"{stage}_ray_first_item: {one['first']:.1f} s (local: {local['first']:.1f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--snippets", type=int, default=12)
    parser.add_argument("--only", choices=("images", "text"), default=None)
    args = parser.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SystemExit("bench_ray: needs Ray (pip install 'bakery[ray]')") from None
    print(f"machine: {os.cpu_count()} CPUs", flush=True)
    if args.only in (None, "images"):
        bench("images", "generate", "build/raw/example-*.png", args.images, IMAGE_BATCH)
    if args.only in (None, "text"):
        bench("text", "text", "build/text/snippet-*.txt", args.snippets, TEXT_BATCH)


if __name__ == "__main__":
    main()
