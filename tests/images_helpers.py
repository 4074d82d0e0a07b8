"""Helpers for the image-stage tests: fixture paths, case loading, parity checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SG2_DIR = FIXTURES / "stylegan2"
SG1_DIR = FIXTURES / "stylegan1"
SG2_PKL = SG2_DIR / "stylegan2_tf1_synthetic_r64.pkl"
SG1_PKL = SG1_DIR / "stylegan1_tf1_random_r64.pkl"
NOISE_MODE = {"const": "const", "run_generator": "seeded"}


def fixture_cases(folder: Path) -> list[dict]:
    """The manifest's cases whose npz was copied into tests/fixtures (a subset of seeds)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    return [c for c in manifest["cases"] if (folder / c["npz"]).is_file()]


def tolerances(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())["tolerances"]


def check_case(renderer, case: dict, folder: Path, tol: dict) -> dict:
    """Render one fixture case and assert every README tolerance; returns the errors."""
    ref = np.load(folder / case["npz"])
    out = renderer.render_seeds([case["seed"]], [case["psi"]], [NOISE_MODE[case["noise_mode"]]])
    if case["noise_mode"] == "run_generator":  # the noise we drew must be NVIDIA's, map for map
        from bakery.images.generator import seed_inputs

        _, noise = seed_inputs(renderer.gen, case["seed"], "seeded")
        for k, n in enumerate(noise):
            np.testing.assert_array_equal(n, ref[f"noise/noise{k}"][0, 0])
    image = out["image"].transpose(0, 3, 1, 2)  # ours is NHWC, NVIDIA's NCHW
    err = {
        "ws": float(np.abs(out["ws"] - ref["ws"]).max()),
        "image_max": float(np.abs(image - ref["image_float"]).max()),
        "image_mean": float(np.abs(image - ref["image_float"]).mean()),
    }
    du = np.abs(out["uint8"].astype(int) - ref["image_uint8"].astype(int))
    err["uint8_max"], err["uint8_fraction"] = int(du.max()), float((du > 0).mean())
    where = case["id"]
    assert err["ws"] <= tol["ws_max_abs"], (where, err)
    assert err["image_max"] <= tol["image_float_max_abs"], (where, err)
    assert err["image_mean"] <= tol["image_float_mean_abs"], (where, err)
    assert err["uint8_max"] <= tol["image_uint8_max_abs"], (where, err)
    assert err["uint8_fraction"] <= tol["image_uint8_max_fraction_differing"], (where, err)
    return err


def resave(network, to_save=None):
    """A loaded stand-in Network tree → NetworkToSave tree (same state, canonical arrays)."""
    from bakery.images.pickle_loader import NetworkToSave

    state = dict(network.state)
    state["components"] = {k: resave(v) for k, v in state["components"].items()}
    state["variables"] = [(n, np.float32(v) if np.ndim(v) == 0 else np.array(v, np.float32))
                          for n, v in state["variables"]]
    return NetworkToSave(state)


def load_tuple(path: Path):
    from bakery.images.pickle_loader import RestrictedUnpickler

    with open(path, "rb") as fh:
        return RestrictedUnpickler(fh, str(path)).load()
