"""Checkpoint loading time: the hardened loaders (safe_pickle: opcode scan, numpy stand-ins, bounded
plain copy) against the loaders before the hardening, side by side in one process.

For the shipped demo model and every fixture checkpoint in tests/fixtures, alternating old and
new so that both see the same machine load, the fastest of --rounds loads (the least disturbed
by other work on the machine; `*_cpu` lines: the same in process CPU time, both threads) of:

  parse: file → the checkpoint's plain data (format sniff + loader, no generator built), every
      checkpoint
  load_generator: file → a ready generator (what `bakery generate` pays to load a model), every
      checkpoint that holds one the bakery builds (not the discriminator-only snapshots kept
      for `bakery rank`, nor the TF1 D fixtures, whose Gs is a placeholder); the first line
      names those left out

The old loaders are the modules at --baseline (default 5f874cc, before issue 20) taken with
`git show` into a temporary folder; the old load_generator is that commit's checkpoint code with
today's architecture builders (unchanged by the hardening apart from error messages). Prints
`name: value unit` lines; `*_ratio` is new ÷ old (at most 1.10 is the issue's bound), and checks
that both load the same tensors.

With --large, also a full-size checkpoint made on the spot (StyleGAN 2 config-f at 1024 px,
random weights, NVIDIA's TF1 format: about 290 MB, G and Gs sharing their arrays), parse and
load_generator, the fastest of 3 (not in the totals).

    python bench/bench_checkpoint_load.py [--rounds 15] [--baseline 5f874cc] [--large]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def checkpoints() -> list[Path]:
    return [REPO / "bakery" / "images" / "data" / "demo_stylegan2_256.pkl",
            *sorted((REPO / "tests" / "fixtures").rglob("*.pkl"))]


def old_modules(rev: str, folder: Path):
    """The loaders at `rev`, importable as old_pickle_loader / old_torch_pickle."""
    def source(name: str) -> str:
        return subprocess.run(["git", "show", f"{rev}:bakery/images/{name}.py"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout

    (folder / "old_pickle_loader.py").write_text(source("pickle_loader"))
    (folder / "old_torch_pickle.py").write_text(
        source("torch_pickle").replace("from bakery.images.pickle_loader import", "from old_pickle_loader import"))
    modules = []
    for name in ("old_pickle_loader", "old_torch_pickle"):
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=15, help="loads of each kind per file, alternating (default 15)")
    p.add_argument("--baseline", default="5f874cc", help="git revision of the old loaders (default 5f874cc)")
    p.add_argument("--large", action="store_true", help="also a 1024 px config-f checkpoint (~290 MB)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from bakery.images import checkpoints as new
    from bakery.images.pickle_loader import CheckpointError, load_network_pickle, read_checkpoint
    from bakery.images.torch_pickle import load_torch_pickle

    with tempfile.TemporaryDirectory() as tmp:
        old_pl, old_tp = old_modules(args.baseline, Path(tmp))

        def old_parse(path: Path):
            with open(path, "rb") as fh:  # the old detect_format: 4 bytes, then the 8 MiB sniff
                fh.read(4)
            if old_tp.is_torch_pickle(path):
                return old_tp.load_torch_pickle(path)
            return old_pl.load_network_pickle(path)

        def new_parse(path: Path):
            data = read_checkpoint(path)
            if new.format_of(data, path) == new.FORMAT_TORCH:
                return load_torch_pickle(path, data)
            return load_network_pickle(path, data)

        def old_load_generator(path: Path):
            ckpt = old_parse(path)
            if hasattr(ckpt, "networks"):
                return new.torch_generator(ckpt.generator(), str(path))
            gs = ckpt.gs
            pair = (gs.build_func_name, gs.components["synthesis"].build_func_name)
            if pair == ("G_main", "G_synthesis_stylegan2"):
                from bakery.images.stylegan2 import StyleGAN2

                return StyleGAN2(gs, str(path))
            from bakery.images.stylegan1 import StyleGAN1

            return StyleGAN1(gs, str(path))

        def new_load_generator(path: Path):
            return new.load_generator(path).generator

        def has_generator(path: Path) -> bool:
            """Whether the checkpoint holds a generator the bakery can build (not so: the
            discriminator-only snapshots for `bakery rank`, the TF1 D fixtures' placeholder Gs)."""
            try:
                new_load_generator(path)
            except CheckpointError:
                return False
            return True

        def tensors(ckpt) -> dict:
            if hasattr(ckpt, "networks"):
                return {f"{k}.{n}": v for k, m in ckpt.networks.items() for n, v in m.named_tensors().items()}
            out, todo = {}, [("Gs", ckpt.gs)]
            while todo:
                name, net = todo.pop()
                out.update({f"{name}/{k}": v for k, v in net.variables.items()})
                todo += [(f"{name}/{k}", c) for k, c in net.components.items()]
            return out

        paths = checkpoints()
        generators = {path for path in paths if has_generator(path)}
        without = ", ".join(path.name for path in paths if path not in generators) or "none"
        print(f"{len(paths)} checkpoints (parse), {len(generators)} of them with a generator (load_generator; "
              f"without: {without}), {args.rounds} rounds, baseline {args.baseline}, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        totals = {"parse": [0.0] * 4, "load_generator": [0.0] * 4}
        worst = {"parse": 0.0, "load_generator": 0.0}
        for path in paths:
            a, b = tensors(old_parse(path)), tensors(new_parse(path))
            same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
            if not same:
                raise SystemExit(f"{path.name}: the old and new loaders disagree on the tensors")
            name = path.stem
            kinds = {"parse": (old_parse, new_parse)}
            if path in generators:
                kinds["load_generator"] = (old_load_generator, new_load_generator)
            for kind, (old_fn, new_fn) in kinds.items():
                old_fn(path), new_fn(path)  # warm: imports, file cache, TF's first constants
                times = {"old": [], "new": []}
                cpu = {"old": [], "new": []}
                for _ in range(args.rounds):
                    for label, fn in (("old", old_fn), ("new", new_fn)):
                        start, start_cpu = time.perf_counter(), time.process_time()
                        fn(path)
                        times[label].append(time.perf_counter() - start)
                        cpu[label].append(time.process_time() - start_cpu)
                old_s, new_s = min(times["old"]), min(times["new"])
                old_c, new_c = min(cpu["old"]), min(cpu["new"])
                totals[kind][0] += old_s
                totals[kind][1] += new_s
                totals[kind][2] += old_c
                totals[kind][3] += new_c
                worst[kind] = max(worst[kind], new_s / old_s)
                print(f"{kind}_{name}_old: {old_s * 1e3:.2f} ms", flush=True)
                print(f"{kind}_{name}: {new_s * 1e3:.2f} ms", flush=True)
                print(f"{kind}_{name}_ratio: {new_s / old_s:.3f} x (cpu {new_c / old_c:.3f} x)", flush=True)
        if args.large:
            from bakery.images.make_checkpoint import random_init, stylegan2_pickle

            big = Path(tmp) / "stylegan2_f_1024_synthetic.pkl"
            kw = {"num_channels": 3, "resolution": 1024, "label_size": 0, "fmap_base": 32 << 10, "fmap_max": 512}
            big.write_bytes(stylegan2_pickle(kw, random_init(0)))
            print(f"large checkpoint: {big.stat().st_size / 1e6:.0f} MB", flush=True)
            for kind, (old_fn, new_fn) in {"parse": (old_parse, new_parse),
                                           "load_generator": (old_load_generator, new_load_generator)}.items():
                times = {"old": [], "new": []}
                for _ in range(3):
                    for label, fn in (("old", old_fn), ("new", new_fn)):
                        start = time.perf_counter()
                        fn(big)
                        times[label].append(time.perf_counter() - start)
                old_s, new_s = min(times["old"]), min(times["new"])
                print(f"{kind}_stylegan2_f_1024_old: {old_s * 1e3:.0f} ms")
                print(f"{kind}_stylegan2_f_1024: {new_s * 1e3:.0f} ms")
                print(f"{kind}_stylegan2_f_1024_ratio: {new_s / old_s:.3f} x", flush=True)
        for kind, (old_s, new_s, old_c, new_c) in totals.items():
            print(f"{kind}_all_checkpoints_old: {old_s * 1e3:.1f} ms")
            print(f"{kind}_all_checkpoints: {new_s * 1e3:.1f} ms")
            print(f"{kind}_all_checkpoints_ratio: {new_s / old_s:.3f} x")
            print(f"{kind}_all_checkpoints_cpu_ratio: {new_c / old_c:.3f} x")
            print(f"{kind}_worst_ratio: {worst[kind]:.3f} x")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
