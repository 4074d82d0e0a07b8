"""Speed of the PyTorch-snapshot generators (stylegan2-ada-pytorch, StyleGAN3) in the bakery's TF2,
against NVIDIA's own PyTorch code on the same checkpoint in the same run.

For each fixture snapshot (64 px): images/s at batch 1 and at the best of a few batch sizes.
With `--nvidia-ada DIR` / `--nvidia-sg3 DIR` (an extracted copy of NVlabs/stylegan2-ada-pytorch
or NVlabs/stylegan3 kept OUTSIDE this project, never vendored), NVIDIA's generator runs on the
same pickle in a subprocess, float32 (`force_fp32=True` for ada; the stylegan3 code is float32
off CUDA), `noise_mode='const'`, psi 0.7, with 1 torch thread and with as many as TF gets
(the faster counts: on a loaded machine torch's OpenMP threads can lose 10× to
oversubscription), and the ratio bakery ÷ NVIDIA is printed for batch 1 and for the best
batch of each.

    python bench/bench_torch_models.py [--quick] [--nvidia-ada DIR] [--nvidia-sg3 DIR] [--nvidia-python PY]

The folders may also come from BAKERY_NVIDIA_ADA / BAKERY_NVIDIA_SG3 (so that bench/run_all.py,
which passes no arguments, runs the baselines too), and the Python that runs NVIDIA's code from
BAKERY_NVIDIA_PYTHON (default: this one; NVIDIA's StyleGAN3 code also needs scipy, which the
bakery does not: point it at a throwaway venv that has torch and scipy). A folder that is not
there is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODELS = {  # name: (snapshot, which NVIDIA repository runs it)
    "ada64": (REPO / "tests" / "fixtures" / "stylegan2_ada" / "stylegan2_ada_synthetic_r64.pkl", "ada"),
    "sg3t64": (REPO / "tests" / "fixtures" / "stylegan3" / "stylegan3_t_synthetic_r64.pkl", "sg3"),
}
BATCHES = (1, 4, 8, 16, 32)

NVIDIA_RUN = r"""
import json, pickle, sys, time
import numpy as np, torch
sys.path.insert(0, {repo!r})
import legacy  # NVIDIA's loader: executes the pickle's module source (our own fixture, trusted)
torch.set_num_threads({threads})
with open({model!r}, 'rb') as f:
    G = legacy.load_network_pkl(f)['G_ema'].eval().requires_grad_(False)
kw = dict(truncation_psi=0.7, noise_mode='const')
if {force_fp32}:
    kw['force_fp32'] = True
rates = {{}}
with torch.no_grad():
    for batch in {batches!r}:
        def call(first):
            z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in range(first, first + batch)]))
            img = G(z, torch.zeros([batch, G.c_dim]), **kw)
            (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
        call(0)  # warm-up
        done, start = 0, time.perf_counter()
        while done < {min_images} * batch or time.perf_counter() - start < {seconds}:
            call(1000 + done)
            done += batch
        rates[batch] = done / (time.perf_counter() - start)
print(json.dumps(rates))
"""


def bakery_rate(renderer, batch: int, min_images: int, seconds: float) -> float:
    renderer.render_seeds(list(range(batch)), [0.7] * batch, ["const"] * batch)  # warm-up: tracing
    done, start = 0, time.perf_counter()
    while done < min_images or time.perf_counter() - start < seconds:
        seeds = list(range(1000 + done, 1000 + done + batch))
        renderer.render_seeds(seeds, [0.7] * batch, ["const"] * batch)
        done += batch
    return done / (time.perf_counter() - start)


def nvidia_rates(repo: Path, model: Path, kind: str, threads: int, seconds: float,
                 python: str = sys.executable) -> dict[int, float]:
    code = NVIDIA_RUN.format(repo=str(repo), threads=threads, model=str(model), force_fp32=kind == "ada",
                             batches=BATCHES, min_images=2, seconds=seconds)
    out = subprocess.run([python, "-c", code], cwd=str(repo), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def best(rates: dict[int, float]) -> int:
    return max(rates, key=rates.get)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing windows")
    env = lambda name: Path(os.environ[name]) if os.environ.get(name) else None  # noqa: E731
    parser.add_argument("--nvidia-ada", type=Path, default=env("BAKERY_NVIDIA_ADA"),
                        help="extracted NVlabs/stylegan2-ada-pytorch (outside the project)")
    parser.add_argument("--nvidia-sg3", type=Path, default=env("BAKERY_NVIDIA_SG3"),
                        help="extracted NVlabs/stylegan3 (outside the project)")
    parser.add_argument("--nvidia-python", default=os.environ.get("BAKERY_NVIDIA_PYTHON") or sys.executable,
                        help="the Python (with torch; scipy for StyleGAN3) that runs NVIDIA's code")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 3.0
    nvidia = {"ada": args.nvidia_ada, "sg3": args.nvidia_sg3}

    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer
    from bakery.cpus import usable_cpus
    from bakery.images.tfsetup import device_name

    print(f"device: {device_name()} ({usable_cpus()} CPU threads)")
    for name, (path, kind) in MODELS.items():
        if not path.is_file():
            print(f"{name}: skipped ({path.relative_to(REPO)} not present)")
            continue
        try:
            model = load_generator(path)
        except ImportError as exc:  # e.g. the StyleGAN3 generator not merged into this checkout
            print(f"{name}: skipped ({exc})")
            continue
        gen = model.generator
        renderer = Renderer(gen)
        print(f"{name}_model: {model.description}, {gen.resolution} px")
        ours = {b: bakery_rate(renderer, b, 2 * b if b > 1 else 8, seconds) for b in BATCHES}
        for b, rate in ours.items():
            print(f"{name}_batch{b}: {rate:.1f} images/s")
        print(f"{name}_best_batch: {best(ours)} ({ours[best(ours)]:.1f} images/s, "
              f"{ours[best(ours)] / ours[1]:.2f} x batch 1)")
        if nvidia[kind] is None or not (nvidia[kind] / "legacy.py").is_file():
            where = "give --nvidia-{0} DIR" if nvidia[kind] is None else f"{nvidia[kind]} holds no legacy.py"
            print(f"{name}_nvidia: not run ({where.format(kind)})")
            continue
        try:
            runs = {t: nvidia_rates(nvidia[kind], path, kind, t, seconds, args.nvidia_python)
                    for t in sorted({1, usable_cpus()})}
        except RuntimeError as exc:
            print(f"{name}_nvidia: failed ({exc})")
            continue
        theirs = {b: max(run[b] for run in runs.values()) for b in BATCHES}
        for b, rate in theirs.items():
            threads = ", ".join(f"{run[b]:.1f} with {t} thread(s)" for t, run in runs.items())
            print(f"{name}_nvidia_batch{b}: {rate:.1f} images/s ({threads})")
        print(f"{name}_nvidia_best_batch: {best(theirs)} ({theirs[best(theirs)]:.1f} images/s)")
        print(f"{name}_vs_nvidia_batch1: {ours[1] / theirs[1]:.2f} x (baseline: NVIDIA's PyTorch code, "
              "CPU float32, same run)")
        print(f"{name}_vs_nvidia_best: {ours[best(ours)] / theirs[best(theirs)]:.2f} x "
              "(best batch each, same run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
