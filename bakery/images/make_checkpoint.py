"""Write StyleGAN networks as NVIDIA TF1 pickles: the shipped demo model and test models.

The layout (classes, state keys, variable names, shapes and creation order, G/D/Gs tuple)
is NVIDIA's; only the values come from here. Run as a script to rebuild the embedded
default checkpoint, byte for byte:

    python -m bakery.images.make_checkpoint            # → bakery/images/data/demo_stylegan2_256.pkl

What the demo model draws: it is *not* trained on anything. Its weights are random draws
shaped by hand so that the picture is smooth and colourful: noise strengths are zero, and
the ToRGB outputs of the coarse layers (4–16 px) dominate while the fine layers add only a
faint texture. Every seed gives a different arrangement of soft colour blobs; psi pulls
them toward the average image like in a real model. For faces, point images.model at a
real NVIDIA checkpoint (docs/images.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import numpy as np

from bakery.images.pickle_loader import NetworkToSave, dumps_network_pickle, network_state

DATA_DIR = Path(__file__).resolve().parent / "data"
DEMO_NAME = "demo_stylegan2_256.pkl"
DEMO_KWARGS = {"num_channels": 3, "resolution": 256, "label_size": 0, "latent_size": 64,
               "dlatent_size": 64, "mapping_fmaps": 64, "fmap_base": 256, "fmap_max": 32, "fmap_min": 8}
Init = Callable[[str, tuple], np.ndarray]  # (variable path, shape) → stored value


def nf_stylegan2(kw: dict) -> Callable[[int], int]:
    base, decay = kw.get("fmap_base", 16 << 10), kw.get("fmap_decay", 1.0)
    lo, hi = kw.get("fmap_min", 1), kw.get("fmap_max", 512)
    return lambda stage: int(np.clip(int(base / (2.0 ** (stage * decay))), lo, hi))


def stylegan2_synthesis_shapes(kw: dict) -> list[tuple[str, tuple]]:
    """G_synthesis_stylegan2 (skip) variables in TF creation order."""
    nf, res_log2 = nf_stylegan2(kw), int(np.log2(kw["resolution"]))
    d, ch = kw.get("dlatent_size", 512), kw.get("num_channels", 3)
    shapes = [(f"noise{k}", (1, 1, 2 ** ((k + 5) // 2), 2 ** ((k + 5) // 2))) for k in range(2 * res_log2 - 3)]
    shapes.append(("4x4/Const/const", (1, nf(1), 4, 4)))

    def modconv(scope, cin, cout):
        return [(f"{scope}/weight", (3, 3, cin, cout)), (f"{scope}/mod_weight", (d, cin)),
                (f"{scope}/mod_bias", (cin,)), (f"{scope}/noise_strength", ()), (f"{scope}/bias", (cout,))]

    def torgb(scope, cin):
        return [(f"{scope}/weight", (1, 1, cin, ch)), (f"{scope}/mod_weight", (d, cin)),
                (f"{scope}/mod_bias", (cin,)), (f"{scope}/bias", (ch,))]

    shapes += modconv("4x4/Conv", nf(1), nf(1)) + torgb("4x4/ToRGB", nf(1))
    for res in range(3, res_log2 + 1):
        name = f"{2 ** res}x{2 ** res}"
        shapes += modconv(f"{name}/Conv0_up", nf(res - 2), nf(res - 1))
        shapes += modconv(f"{name}/Conv1", nf(res - 1), nf(res - 1)) + torgb(f"{name}/ToRGB", nf(res - 1))
    return shapes


def mapping_shapes(kw: dict) -> list[tuple[str, tuple]]:
    z, d = kw.get("latent_size", 512), kw.get("dlatent_size", 512)
    n, f = kw.get("mapping_layers", 8), kw.get("mapping_fmaps", 512)
    dims = [z] + [f] * (n - 1) + [d]
    return [item for i in range(n)
            for item in ((f"Dense{i}/weight", (dims[i], dims[i + 1])), (f"Dense{i}/bias", (dims[i + 1],)))]


def stylegan2_d_shapes(kw: dict) -> list[tuple[str, tuple]]:
    """D_stylegan2 (resnet) variables, random: the file has the real (G, D, Gs) shape and a D that
    `bakery rank` builds (its shapes follow from its static_kwargs)."""
    nf, res_log2, ch = nf_stylegan2(kw), int(np.log2(kw["resolution"])), kw.get("num_channels", 3)
    top = f"{kw['resolution']}x{kw['resolution']}"
    shapes = [(f"{top}/FromRGB/weight", (1, 1, ch, nf(res_log2 - 1))), (f"{top}/FromRGB/bias", (nf(res_log2 - 1),))]
    for res in range(res_log2, 2, -1):
        name = f"{2 ** res}x{2 ** res}"
        shapes += [(f"{name}/Conv0/weight", (3, 3, nf(res - 1), nf(res - 1))), (f"{name}/Conv0/bias", (nf(res - 1),)),
                   (f"{name}/Conv1_down/weight", (3, 3, nf(res - 1), nf(res - 2))),
                   (f"{name}/Conv1_down/bias", (nf(res - 2),)), (f"{name}/Skip/weight", (1, 1, nf(res - 1), nf(res - 2)))]
    return shapes + [("4x4/Conv/weight", (3, 3, nf(1) + 1, nf(1))), ("4x4/Conv/bias", (nf(1),)),
                     ("4x4/Dense0/weight", (nf(1) * 16, nf(0))), ("4x4/Dense0/bias", (nf(0),)),
                     ("Output/weight", (nf(0), 1)), ("Output/bias", (1,))]


def generator_network(name: str, kw: dict, init: Init, top_build="G_main", synthesis_build="G_synthesis_stylegan2",
                      synthesis_shapes=stylegan2_synthesis_shapes, num_ws=None, version=4) -> NetworkToSave:
    """A G/Gs network: synthesis is created before mapping, as in NVIDIA's G_main / G_style."""
    num_ws = num_ws or 2 * int(np.log2(kw["resolution"])) - 2
    synthesis = NetworkToSave(network_state(
        "G_synthesis", synthesis_build, kw, [(n, init(f"synthesis/{n}", s)) for n, s in synthesis_shapes(kw)],
        version=version))
    mapping = NetworkToSave(network_state(
        "G_mapping", "G_mapping", {"dlatent_broadcast": num_ws, **kw},
        [(n, init(f"mapping/{n}", s)) for n, s in mapping_shapes(kw)], version=version))
    top = [(n, init(n, s)) for n, s in [("lod", ()), ("dlatent_avg", (kw.get("dlatent_size", 512),))]]
    return NetworkToSave(network_state(name, top_build, kw, top, {"synthesis": synthesis, "mapping": mapping},
                                       version=version))


def random_init(seed: int, lrmul: float = 0.01) -> Init:
    """NVIDIA-like stored values: N(0, 1) weights (N(0, 1/lrmul²) in the mapping), small biases."""
    rng = np.random.RandomState(seed)

    def init(path: str, shape: tuple) -> np.ndarray:
        leaf = path.rsplit("/", 1)[-1]
        if leaf == "lod":
            return np.zeros(shape, np.float32)
        if path.startswith("mapping/") and leaf == "weight":
            return (rng.randn(*shape) / lrmul).astype(np.float32)
        if leaf in ("bias", "mod_bias", "dlatent_avg"):
            return (0.1 * rng.randn(*shape)).astype(np.float32)
        if leaf == "noise_strength":
            return np.float32(0.1 * rng.randn())
        return rng.randn(*shape).astype(np.float32)

    return init


def demo_init(seed: int = 2024) -> Init:
    """Hand-shaped random values for the demo: smooth, saturated colour fields, no grain."""
    base = random_init(seed)
    torgb_gain = {4: 0.9, 8: 0.7, 16: 0.4, 32: 0.12, 64: 0.05, 128: 0.02, 256: 0.01}

    def init(path: str, shape: tuple) -> np.ndarray:
        value = base(path, shape)
        leaf = path.rsplit("/", 1)[-1]
        if leaf == "noise_strength":
            return np.float32(0.0)  # no per-pixel noise: smooth blobs, and const == seeded noise
        if "/ToRGB/" in path:
            res = int(path.split("/")[1].split("x")[0])
            if leaf == "weight":
                return (value * torgb_gain[res]).astype(np.float32)
            if leaf == "bias":  # lift the 4×4 colour field a little: pastel rather than dark
                return np.full(shape, 0.25 if res == 4 else 0.0, np.float32)
        if path == "dlatent_avg":
            return np.zeros(shape, np.float32)  # replaced by the measured average below
        return value

    return init


def mapping_average(kw: dict, init: Init, count: int = 4096, seed: int = 0) -> np.ndarray:
    """dlatent_avg as training tracks it: the mean mapping output, here over `count` random z."""
    lrmul, n = kw.get("mapping_lrmul", 0.01), kw.get("mapping_layers", 8)
    x = np.random.RandomState(seed).randn(count, kw.get("latent_size", 512))
    x = x / np.sqrt(np.mean(x * x, axis=1, keepdims=True) + 1e-8)
    for i in range(n):
        w, b = init(f"mapping/Dense{i}/weight", None), init(f"mapping/Dense{i}/bias", None)
        x = x @ (w * lrmul / np.sqrt(w.shape[0])) + b * lrmul
        x = np.maximum(x, 0.2 * x) * np.sqrt(2.0)
    return x.mean(axis=0).astype(np.float32)


class Recorded:
    """Calls an Init once per path and remembers the value, so G and Gs can share weights."""

    def __init__(self, init: Init):
        self.init, self.values = init, {}

    def __call__(self, path: str, shape):
        if path not in self.values:
            self.values[path] = self.init(path, shape)
        return self.values[path]


def stylegan2_pickle(kw: dict, init: Init, d_seed: int = 7) -> bytes:
    """(G, D, Gs) with G = Gs (a finished run's G differs a little; nothing samples from G)."""
    gs_init = Recorded(init)
    generator_network("Gs", kw, gs_init)  # fills the values, mapping included
    gs_init.values["dlatent_avg"] = mapping_average(kw, gs_init)
    gs = generator_network("Gs", kw, gs_init)
    g = generator_network("G", kw, gs_init)
    # D_stylegan2 takes the same feature-map kwargs as the generator (fmap_min too), so the
    # D's shapes follow from its static_kwargs as NVIDIA's build function derives them
    d_kw = {k: kw[k] for k in ("num_channels", "resolution", "label_size", "fmap_base", "fmap_decay", "fmap_min",
                                "fmap_max") if k in kw}
    d_init = random_init(d_seed)
    d = NetworkToSave(network_state("D", "D_stylegan2", d_kw, [(n, d_init(n, s)) for n, s in stylegan2_d_shapes(kw)]))
    return dumps_network_pickle((g, d, gs), protocol=3)


def demo_checkpoint_bytes() -> bytes:
    return stylegan2_pickle(DEMO_KWARGS, demo_init())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild the embedded demo StyleGAN 2 checkpoint.")
    parser.add_argument("--out", type=Path, default=DATA_DIR / DEMO_NAME)
    args = parser.parse_args(argv)
    from bakery.fsutil import write_bytes_atomic

    data = demo_checkpoint_bytes()
    write_bytes_atomic(args.out, data)
    print(f"wrote {args.out} ({len(data) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
