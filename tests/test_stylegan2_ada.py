"""stylegan2-ada-pytorch snapshots rendered by the TF2 StyleGAN2: parity with NVIDIA's own PyTorch
code (the shared fixture, and NVIDIA-made references for the resnet / orig / class-conditional
variants), sampling semantics, class labels, format detection and a 3-band bake."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bakery.cli import main
from bakery.images.pickle_loader import CheckpointError
from images_helpers import FIXTURES, SG2_PKL
from test_images_stage import digests, project
from torch_pickle_helpers import dumps_snapshot, persistent

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ADA_DIR = FIXTURES / "stylegan2_ada"
ADA_PKL = ADA_DIR / "stylegan2_ada_synthetic_r64.pkl"
VARIANTS = FIXTURES / "stylegan2_ada_variants"


@pytest.fixture(scope="module")
def ada():
    from bakery.images.checkpoints import load_generator

    return load_generator(ADA_PKL)


def _errors(out: dict, ref) -> dict:
    image = out["image"].transpose(0, 3, 1, 2)  # ours NHWC, NVIDIA's NCHW
    du = np.abs(out["uint8"].astype(int) - ref["image_uint8"].astype(int))
    return {"ws": float(np.abs(out["ws"] - ref["ws"]).max()),
            "image_max": float(np.abs(image - ref["image_float"]).max()),
            "image_mean": float(np.abs(image - ref["image_float"]).mean()),
            "uint8_max": int(du.max()), "uint8_fraction": float((du > 0).mean())}


def _check_cases(gen, folder: Path, cases: list[dict], tol: dict) -> None:
    from bakery.images.generator import Renderer

    renderers = {}
    for case in cases:
        ref = np.load(folder / case["npz"])
        cutoff = case["truncation_cutoff"]  # None: every row, as NVIDIA's truncation_cutoff=None
        renderer = renderers.setdefault(cutoff, Renderer(gen, cutoff))
        out = renderer.render_seeds([case["seed"]], [case["psi"]], [case["noise_mode"]],
                                    classes=[case.get("class_index")])
        err = _errors(out, ref)
        assert err["ws"] <= tol["ws_max_abs"], (case["id"], err)
        assert err["image_max"] <= tol["image_float_max_abs"], (case["id"], err)
        assert err["image_mean"] <= tol["image_float_mean_abs"], (case["id"], err)
        assert err["uint8_max"] <= tol["image_uint8_max_abs"], (case["id"], err)
        assert err["uint8_fraction"] <= tol["image_uint8_max_fraction_differing"], (case["id"], err)


def test_ada_fixture_parity_within_readme_tolerances(ada):
    manifest = json.loads((ADA_DIR / "manifest.json").read_text())
    cases = manifest["cases"]
    assert len(cases) == 32 and {c["noise_mode"] for c in cases} == {"const", "none"}
    assert any(c["conv_clamp"]["values_clamped"] for c in cases)  # the clamp matters in this fixture
    _check_cases(ada.generator, ADA_DIR, cases, manifest["tolerances"])


@pytest.mark.slow
@pytest.mark.parametrize("name, architecture, c_dim", [
    ("resnet_c0_r32", "resnet", 0), ("orig_c4_r16", "orig", 4), ("skip_c3_r16", "skip", 3),
    ("sg3repo_skip_c2_r32", "skip", 2)])
def test_variant_parity_with_nvidia_code(name, architecture, c_dim):
    """References made by NVIDIA's networks.py (make_references.py): resnet with a clamp that fires,
    orig with a class label and wider mapping layers, skip with a class label, and a class-conditional
    StyleGAN 2 of the stylegan3 repository (networks_stylegan2.py: flat init kwargs, default clamp 256)."""
    from bakery.images.checkpoints import load_generator

    gen = load_generator(VARIANTS / f"{name}.pkl").generator
    assert (gen.architecture, gen.c_dim) == (architecture, c_dim)
    cases = json.loads((VARIANTS / "manifest.json").read_text())[name]["cases"]
    tol = json.loads((ADA_DIR / "manifest.json").read_text())["tolerances"]
    _check_cases(gen, VARIANTS, cases, tol)


def test_format_detection_and_description(ada, tmp_path):
    from bakery.images.checkpoints import FORMAT_TF1, FORMAT_TORCH, detect_format, load_generator

    assert detect_format(ADA_PKL) == FORMAT_TORCH and detect_format(SG2_PKL) == FORMAT_TF1
    assert ada.description == "StyleGAN 2 (PyTorch) from an NVIDIA PyTorch network snapshot"
    assert ada.format == FORMAT_TORCH and load_generator(SG2_PKL).format == FORMAT_TF1
    archive = tmp_path / "state_dict.pt"
    archive.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(CheckpointError, match="torch.save archive"):
        detect_format(archive)


def test_shapes_noise_and_truncation_semantics(ada):
    from bakery.images.generator import Renderer

    gen = ada.generator
    assert (gen.z_dim, gen.w_dim, gen.c_dim, gen.num_ws, gen.resolution) == (128, 128, 0, 10, 64)
    assert gen.default_cutoff == 10 and gen.architecture == "skip"
    assert gen.noise_shapes[0] == (4, 4) and gen.noise_shapes[-1] == (64, 64) and len(gen.noise_shapes) == 9
    renderer = Renderer(gen, 3)  # one traced graph (batch 1), reused for every call below
    out = [renderer.render_seeds([1], [psi], [mode]) for psi, mode in
           [(0.5, "const"), (0.5, "none"), (0.5, "random"), (0.0, "const"), (1.0, "const")]]
    image = [o["image"][0] for o in out]
    assert np.abs(image[0] - image[1]).mean() > 1e-3 and np.abs(image[0] - image[2]).mean() > 1e-3
    avg = gen.dlatent_avg.numpy()
    np.testing.assert_allclose(out[3]["ws"][0, :3], np.tile(avg, (3, 1)), atol=1e-6)  # psi 0 = w_avg
    cut, full = out[0]["ws"][0], out[4]["ws"][0]
    np.testing.assert_allclose(cut[:3], avg + 0.5 * (full[:3] - avg), atol=1e-6)  # lerp on rows < cutoff
    np.testing.assert_allclose(cut[3:], full[3:], atol=1e-6)  # the rest untouched


def test_conditional_model_labels_and_batch_invariance():
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer

    gen = load_generator(VARIANTS / "skip_c3_r16.pkl").generator
    renderer = Renderer(gen)
    batch = renderer.render_seeds([5, 5, 6, 7], [0.7] * 4, ["const"] * 4, classes=[0, 1, 2, 0])
    assert np.abs(batch["image"][0] - batch["image"][1]).mean() > 1e-3  # the class changes the picture
    for i, (seed, k) in enumerate(zip([5, 5, 6, 7], [0, 1, 2, 0])):
        one = renderer.render_seeds([seed], [0.7], ["const"], classes=[k])
        np.testing.assert_array_equal(one["image"][0], batch["image"][i])
    with pytest.raises(CheckpointError, match=r"class-conditional \(3 classes\).*needs a class \(0-2\)"):
        renderer.render_seeds([1], [0.7], ["const"])
    with pytest.raises(CheckpointError, match="class 3 is out of range"):
        renderer.render_seeds([1], [0.7], ["const"], classes=[3])


def _mutated(tmp_path: Path, mutate) -> Path:
    from bakery.images.torch_pickle import load_torch_pickle

    g = load_torch_pickle(ADA_PKL).generator()
    mutate(g)
    path = tmp_path / "mutated.pkl"
    path.write_bytes(dumps_snapshot({"G_ema": persistent(g)}))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda g: g.child("synthesis").child("b8").attrs.update(architecture="fancy"),
     r"architecture \['fancy', 'skip'\] is not supported"),
    (lambda g: g.child("mapping").buffers.pop("w_avg"), "has no w_avg"),
    (lambda g: g.child("mapping").buffers.update(extra=np.zeros(3, np.float32)), "does not know: mapping.extra"),
    (lambda g: g.child("synthesis").child("b16").child("conv1").params.update(
        weight=np.zeros((32, 32, 5, 5), np.float32)), r"b16.conv1.weight' has shape \[32, 32, 5, 5\]"),
    (lambda g: g.child("synthesis").child("b8").child("conv0").attrs.update(activation="relu"),
     "activation 'relu' is not supported"),
    (lambda g: g.child("mapping").child("fc0").params["weight"].__setitem__((0, 0), np.nan), "NaN"),
])
def test_unsupported_or_broken_generators_are_clear_errors(tmp_path, mutate, message):
    from bakery.images.checkpoints import load_generator

    with pytest.raises(CheckpointError, match=message):
        load_generator(_mutated(tmp_path, mutate))


ADA_BANDS = """
    [images]
    model = "{model}"
    batch_size = 3

    [[images.bands]]
    seeds = "0-2"
    psi = 0.7

    [[images.bands]]
    seeds = "3-4"
    psi = 1.0
    noise = "none"

    [[images.bands]]
    seeds = "5-6"
    psi = 0.5
    noise = "seeded"
    {extra}
    """


@pytest.mark.slow
def test_three_band_bake_from_an_ada_snapshot(tmp_path):
    config = project(tmp_path, ADA_BANDS.format(model=ADA_PKL, extra=""))
    assert main(["-q", "-c", str(config), "generate"]) == 0
    raw = tmp_path / "build" / "raw"
    assert sorted(digests(raw)) == sorted(f"example-{i}.png" for i in range(7))
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["generator"] == "StyleGAN 2 (PyTorch)" and manifest["resolution"] == 64
    assert manifest["images"]["3"]["noise"] == "none"
    # seed 0 at psi 0.7 with const noise is the fixture's case, pixel for pixel (± the README's 1 level)
    ref = np.load(ADA_DIR / "cases" / "seed0000_psi0.70_cutall_const.npz")["image_uint8"][0]
    png = np.asarray(Image.open(raw / "example-0.png"))
    assert np.abs(png.astype(int) - ref).max() <= 1 and (png != ref).mean() <= 1e-3
    before = {p.name: p.stat().st_mtime_ns for p in raw.glob("example-*.png")}
    assert main(["-q", "-c", str(config), "generate"]) == 0  # a rerun is a no-op
    assert {p.name: p.stat().st_mtime_ns for p in raw.glob("example-*.png")} == before


def test_conditional_bake_needs_a_class_per_band(tmp_path, capsys):
    model = VARIANTS / "skip_c3_r16.pkl"
    config = project(tmp_path, ADA_BANDS.format(model=model, extra=""))
    assert main(["-q", "-c", str(config), "generate"]) != 0
    assert "images.bands[0].class: this model is class-conditional (3 classes)" in capsys.readouterr().err
    assert not list((tmp_path / "build" / "raw").glob("example-*.png"))
    config = project(tmp_path, ADA_BANDS.format(model=ADA_PKL, extra="class = 1"))
    assert main(["-q", "-c", str(config), "generate"]) != 0
    assert "images.bands[2].class: class 1: this model is not class-conditional" in capsys.readouterr().err


def test_stylegan3_synthesis_dispatches_to_the_stylegan3_generator(monkeypatch):
    """A generator whose synthesis has a SynthesisInput child goes to stylegan3.StyleGAN3(module, source)."""
    import sys
    import types

    from bakery.images.checkpoints import torch_generator
    from bakery.images.torch_pickle import TorchModule

    made = []
    fake = types.ModuleType("bakery.images.stylegan3")
    fake.StyleGAN3 = lambda module, source: made.append((module, source)) or "sg3"
    monkeypatch.setitem(sys.modules, "bakery.images.stylegan3", fake)
    synthesis = TorchModule("SynthesisNetwork", {}, {}, {}, {"input": TorchModule("SynthesisInput", {}, {}, {})})
    g = TorchModule("Generator", {}, {}, {}, {"synthesis": synthesis})
    assert torch_generator(g, "x.pkl") == "sg3" and made == [(g, "x.pkl")]
    with pytest.raises(CheckpointError, match="without a synthesis network"):
        torch_generator(TorchModule("Discriminator", {}, {}, {}), "x.pkl")


def test_band_class_and_noise_none_in_the_config(tmp_path):
    from bakery.config import load_config
    from bakery.errors import ConfigError

    config = load_config(project(tmp_path, ADA_BANDS.format(model=ADA_PKL, extra="class = 2")))
    assert [b.class_index for b in config.images.bands] == [None, None, 2]
    assert [b.noise for b in config.images.bands] == ["const", "none", "seeded"]
    with pytest.raises(ConfigError, match=r"bands\[2\].*class"):
        load_config(project(tmp_path, ADA_BANDS.format(model=ADA_PKL, extra="class = -1")))
