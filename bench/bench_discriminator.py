"""Discriminator scoring speed on this machine's CPU (or GPU if TF sees one).

For each fixture checkpoint (64 px: StyleGAN 1 and 2 TF1, stylegan2-ada, StyleGAN3, the
conditional snapshot): D images/s at batch 4 (one minibatch per call, NVIDIA's ranking way),
with `bakery rank`'s 8 minibatches per call (the same logits, bit for bit), and, measured side
by side as the baseline, the same checkpoint's generator at batch 4: what a D score costs
next to rendering the image it scores. Then `bakery rank` end to end (PNG decode, 5 passes)
on the fixture folder.

    python bench/bench_discriminator.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FIX = REPO / "tests" / "fixtures"
MODELS = {  # name: (checkpoint, images, generator checkpoint for the baseline, or None)
    "stylegan1_tf1": (FIX / "stylegan1" / "stylegan1_tf1_random_r64.pkl", FIX / "stylegan1" / "d_scores" / "png", True),
    "stylegan2_tf1": (FIX / "stylegan2" / "stylegan2_tf1_synthetic_r64.pkl", FIX / "stylegan2" / "d_scores" / "png", True),
    "stylegan2_ada": (FIX / "stylegan2_ada" / "stylegan2_ada_synthetic_r64.pkl",
                      FIX / "stylegan2_ada" / "d_scores" / "png", True),
    "stylegan3": (FIX / "stylegan3" / "stylegan3_t_synthetic_r64.pkl", FIX / "stylegan3" / "d_scores" / "png", True),
    "conditional": (FIX / "d_conditional" / "d_only_r64.pkl", FIX / "d_conditional" / "d_scores" / "png", False),
}


def rate(step, images_per_step: int, min_seconds: float, windows: int = 3) -> float:
    """Best of `windows` timing windows (the machine is shared: the best is the least disturbed)."""
    step()  # warm-up: tracing, allocation
    best = 0.0
    for _ in range(windows):
        done, start = 0, time.perf_counter()
        while done < 3 or time.perf_counter() - start < min_seconds / windows:
            step()
            done += 1
        best = max(best, done * images_per_step / (time.perf_counter() - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing windows")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 3.0

    from PIL import Image

    from bakery.images.checkpoints import load_generator
    from bakery.images.d_checkpoints import load_discriminator
    from bakery.images.discriminator import DScorer
    from bakery.images.generator import Renderer
    from bakery.images.rank import CALL_MINIBATCHES, RankOptions, rank_folder
    from bakery.cpus import usable_cpus
    from bakery.images.tfsetup import device_name

    print(f"device: {device_name()} ({usable_cpus()} CPU threads)")
    ratios = []
    for name, (pkl, png_dir, has_generator) in MODELS.items():
        d = load_discriminator(pkl).discriminator
        scorer = DScorer(d)
        pngs = sorted(png_dir.glob("*.png"))
        x = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in pngs])
        wide = np.concatenate([x] * (4 * CALL_MINIBATCHES // len(x) + 1))[:4 * CALL_MINIBATCHES]
        labels = None if d.c_dim == 0 else np.eye(d.c_dim, dtype=np.float32)[np.arange(len(wide)) % d.c_dim]
        print(f"{name}_d: {d.kind}, {d.resolution} px, {d.architecture if hasattr(d, 'architecture') else 'basic'}")
        b4 = rate(lambda: scorer.run(wide[:4], None if labels is None else labels[:4]), 4, seconds)
        print(f"{name}_d_batch4: {b4:.1f} images/s")
        call = rate(lambda: scorer.minibatches(wide, labels, 4), len(wide), seconds)
        print(f"{name}_d_{CALL_MINIBATCHES}_minibatches_per_call: {call:.1f} images/s ({call / b4:.2f} x batch 4)")
        if has_generator:
            renderer = Renderer(load_generator(pkl).generator)
            seeds = list(range(4))
            g4 = rate(lambda: renderer.render_seeds(seeds, [0.7] * 4, ["const"] * 4), 4, seconds)
            print(f"{name}_generator_batch4: {g4:.1f} images/s (baseline, same run)")
            print(f"{name}_d_vs_generator: {b4 / g4:.2f} x (one D score per image costs "
                  f"{100 * g4 / b4:.0f} % of rendering it)")
            ratios.append(b4 / g4)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pkl, png_dir, _ = MODELS["stylegan2_ada"]
        for i in range(10):  # 100 images
            for p in sorted(png_dir.glob("*.png")):
                (folder / f"{i}_{p.name}").write_bytes(p.read_bytes())
        start = time.perf_counter()
        rank_folder(pkl, folder, RankOptions(shuffles=5))
        took = time.perf_counter() - start
        print(f"rank_end_to_end_100_images_5_passes: {100 * 5 / took:.1f} scored images/s "
              f"({took:.1f} s including model load and tracing)")
    print(f"d_vs_generator_min: {min(ratios):.2f} x (baseline: the generator at batch 4, same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
