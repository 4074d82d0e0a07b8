"""Image generation speed on this machine's CPU (or GPU if TF sees one).

For the fixture model (StyleGAN 2, 64 px) and the embedded default (StyleGAN 2, 256 px):
images/s at batch 1 (the original site's way: one image per call) and at the best of a few
batch sizes, their ratio (target ≥ 3×), and the convolution GFLOP/s achieved, against the
GFLOP/s of a plain float32 matmul measured in the same run (the machine's practical peak).

    python bench/bench_images.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODELS = {
    "fixture64": REPO / "tests" / "fixtures" / "stylegan2" / "stylegan2_tf1_synthetic_r64.pkl",
    "default256": REPO / "bakery" / "images" / "data" / "demo_stylegan2_256.pkl",
}
BATCHES = (4, 8, 16, 32)


def images_per_second(renderer, batch: int, min_images: int, min_seconds: float) -> float:
    seeds = list(range(batch))
    renderer.render_seeds(seeds, [0.7] * batch, ["seeded"] * batch)  # warm-up: tracing, allocation
    done, start, first = 0, time.perf_counter(), 1000
    while done < min_images or time.perf_counter() - start < min_seconds:
        seeds = list(range(first + done, first + done + batch))
        renderer.render_seeds(seeds, [0.7] * batch, ["seeded"] * batch)
        done += batch
    return done / (time.perf_counter() - start)


ONE_CALL = """
import sys
sys.path.insert(0, {repo!r})
from bakery.images.checkpoints import load_generator
from bakery.images.generator import Renderer
renderer = Renderer(load_generator({model!r}).generator)
renderer.render_seeds([{seed}], [0.7], ["seeded"])
"""


def per_process_call_seconds(model: Path, calls: int = 3) -> float:
    """The original's way: one process per image (import, load, build, render one)."""
    import subprocess

    total = 0.0
    for seed in range(calls):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", ONE_CALL.format(repo=str(REPO), model=str(model), seed=seed)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total += time.perf_counter() - start
    return total / calls


def matmul_gflops(tf, n: int = 1024, seconds: float = 2.0) -> float:
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    tf.matmul(a, b).numpy()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        tf.matmul(a, b).numpy()
        count += 1
    return 2.0 * n ** 3 * count / (time.perf_counter() - start) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing windows")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 3.0

    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer
    from bakery.cpus import usable_cpus
    from bakery.images.tfsetup import device_name, import_tf

    tf = import_tf()
    print(f"device: {device_name()} ({usable_cpus()} CPU threads)")
    peak = matmul_gflops(tf, seconds=seconds)
    print(f"matmul_1024_float32: {peak:.1f} GFLOP/s")
    worst_ratio = None
    for name, path in MODELS.items():
        gen = load_generator(path).generator
        renderer = Renderer(gen)
        flops = gen.flops_per_image()
        one = images_per_second(renderer, 1, min_images=8, min_seconds=seconds)
        rates = {b: images_per_second(renderer, b, min_images=2 * b, min_seconds=seconds) for b in BATCHES}
        best = max(rates, key=rates.get)
        ratio = rates[best] / one
        worst_ratio = ratio if worst_ratio is None else min(worst_ratio, ratio)
        print(f"{name}_model: {gen.kind} {gen.resolution} px, {flops / 1e9:.3f} GFLOP/image (convolutions)")
        print(f"{name}_batch1: {one:.1f} images/s")
        for b, r in rates.items():
            print(f"{name}_batch{b}: {r:.1f} images/s")
        print(f"{name}_best_batch: {best}")
        print(f"{name}_batched_vs_batch1: {ratio:.2f} x (target >= 3)")
        per_call = per_process_call_seconds(path)
        print(f"{name}_one_image_per_process: {1 / per_call:.2f} images/s ({per_call:.1f} s a call)")
        print(f"{name}_batched_vs_one_per_process: {rates[best] * per_call:.0f} x "
              "(baseline: the original's one image per process call, same run)")
        print(f"{name}_gflops_batch1: {one * flops / 1e9:.1f} GFLOP/s "
              f"({100 * one * flops / 1e9 / peak:.0f}% of matmul)")
        print(f"{name}_gflops_best: {rates[best] * flops / 1e9:.1f} GFLOP/s "
              f"({100 * rates[best] * flops / 1e9 / peak:.0f}% of matmul)")
    print(f"images_batched_vs_batch1_min: {worst_ratio:.2f} x (baseline: batch 1, same run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
