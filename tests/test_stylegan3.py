"""StyleGAN3 snapshots (-T and -R) rendered by the TF2 StyleGAN3: parity with NVIDIA's own PyTorch
code (the shared fixture, and NVIDIA-made references for an -R and another -T), the input
transform (translate / rotate), batch invariance, noise modes, the loader's numpy globals,
hostile and broken snapshots, the band config, a 3-band bake and the `generate --model` path."""

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
from torch_pickle_helpers import Persistent, dumps_snapshot, persistent

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SG3_DIR = FIXTURES / "stylegan3"
SG3_PKL = SG3_DIR / "stylegan3_t_synthetic_r64.pkl"
VARIANTS = FIXTURES / "stylegan3_variants"
MANIFEST = json.loads((SG3_DIR / "manifest.json").read_text())
TOL = MANIFEST["tolerances"]


@pytest.fixture(scope="module")
def sg3():
    from bakery.images.checkpoints import load_generator

    return load_generator(SG3_PKL)


def _errors(out: dict, ref) -> dict:
    image = out["image"].transpose(0, 3, 1, 2)  # ours NHWC, NVIDIA's NCHW
    du = np.abs(out["uint8"].astype(int) - ref["image_uint8"].astype(int))
    return {"ws": float(np.abs(out["ws"] - ref["ws"]).max()),
            "image_max": float(np.abs(image - ref["image_float"]).max()),
            "image_mean": float(np.abs(image - ref["image_float"]).mean()),
            "uint8_max": int(du.max()), "uint8_fraction": float((du > 0).mean())}


def _assert_within(err: dict, case_id: str) -> None:
    assert err["ws"] <= TOL["ws_max_abs"], (case_id, err)
    assert err["image_max"] <= TOL["image_float_max_abs"], (case_id, err)
    assert err["image_mean"] <= TOL["image_float_mean_abs"], (case_id, err)
    assert err["uint8_max"] <= TOL["image_uint8_max_abs"], (case_id, err)
    assert err["uint8_fraction"] <= TOL["image_uint8_max_fraction_differing"], (case_id, err)


def _check_cases(gen, folder: Path, cases: list[dict], batch: int = 1) -> None:
    """Every case within the README's tolerances; cases of one cutoff go `batch` at a time, each
    with its own seed, psi, noise mode, class and input transform."""
    from bakery.images.generator import Renderer, input_transform

    by_cutoff: dict = {}
    for case in cases:
        by_cutoff.setdefault(case["truncation_cutoff"], []).append(case)
    for cutoff, group in by_cutoff.items():
        renderer = Renderer(gen, cutoff)  # None: every row, as NVIDIA's truncation_cutoff=None
        for start in range(0, len(group), batch):
            chunk = group[start:start + batch]
            refs = [np.load(folder / c["npz"]) for c in chunk]
            transforms = [input_transform(c["translate"], c["rotate"]) for c in chunk]
            for t, ref in zip(transforms, refs):  # our gen_images.py matrix is the one NVIDIA was given
                np.testing.assert_allclose(t, ref["transform"], atol=1e-12)
            out = renderer.render_seeds([c["seed"] for c in chunk], [c["psi"] for c in chunk],
                                        [c["noise_mode"] for c in chunk],
                                        classes=[c.get("class_index") for c in chunk], transforms=transforms)
            for i, (case, ref) in enumerate(zip(chunk, refs)):
                one = {k: v[i:i + 1] for k, v in out.items()}
                _assert_within(_errors(one, ref), case["id"])


def test_fixture_parity_within_readme_tolerances(sg3):
    cases = MANIFEST["cases"]
    assert len(cases) == 36 and sum(c["rotate"] != 0 for c in cases) == 4
    assert all(c["conv_clamp"]["values_clamped"] for c in cases)  # the clamp matters in this fixture
    _check_cases(sg3.generator, SG3_DIR, cases)


@pytest.mark.parametrize("name, kind, c_dim", [("sg3r_c2_r32", "StyleGAN3-R", 2),
                                               ("sg3t_r16_layers8", "StyleGAN3-T", 0)])
def test_variant_parity_with_nvidia_code(name, kind, c_dim):
    """References made by NVIDIA's networks_stylegan3.py (stylegan3_variants/make_references.py):
    an -R (1×1 convs, radial 2-D down filters, a clamp that fires, a class label) and a -T with
    8 layers, 1 critical layer, margin 6 and output scale 0.5."""
    from bakery.images.checkpoints import load_generator

    gen = load_generator(VARIANTS / f"{name}.pkl").generator
    assert (gen.kind, gen.c_dim) == (kind, c_dim)
    spec = json.loads((VARIANTS / "manifest.json").read_text())[name]
    if kind == "StyleGAN3-R":
        assert [layer["kernel"] for layer in gen.layers] == [1] * len(gen.layers)
        assert sum(layer["fd"] is not None and layer["fd"].ndim == 2 for layer in gen.layers) \
            == sum(layer["down_radial"] for layer in spec["layers"]) > 0
    _check_cases(gen, VARIANTS, spec["cases"], batch=4)


def test_reads_the_snapshot_and_its_numpy_state(sg3):
    """The StyleGAN3 layers keep numpy arrays and scalars in their state (numpy.core.multiarray
    _reconstruct / scalar, numpy.ndarray / dtype): read as plain data, nothing else admitted."""
    from bakery.images.checkpoints import FORMAT_TORCH, detect_format

    assert detect_format(SG3_PKL) == FORMAT_TORCH
    assert sg3.sha256 == MANIFEST["pickle"]["sha256"]
    assert sg3.description == "StyleGAN3-T from an NVIDIA PyTorch network snapshot"
    assert ["numpy.core.multiarray", "_reconstruct"] in MANIFEST["pickle"]["globals"]
    syn = sg3.checkpoint.generator().child("synthesis")
    layer = syn.child("L4_52_32")
    assert isinstance(layer.attrs["in_size"], np.ndarray) and layer.attrs["in_size"].dtype == np.int64
    assert list(layer.attrs["out_size"]) == [52, 52] and layer.attrs["up_factor"] == 4
    assert isinstance(syn.child("input").attrs["sampling_rate"], float)  # numpy float64 scalar → float
    gen = sg3.generator
    assert (gen.z_dim, gen.w_dim, gen.c_dim, gen.num_ws, gen.resolution) == (128, 128, 0, 16, 64)
    assert gen.noise_shapes == [] and gen.default_cutoff == 16
    for ours, listed in zip(gen.layers, MANIFEST["generator"]["synthesis_layers"]):
        assert ours["name"] == f"synthesis.{listed['name']}"
        assert (ours["up"], ours["down"], list(ours["padding"]), ours["kernel"]) == \
            (listed["up_factor"], listed["down_factor"], listed["padding"], listed["conv_kernel"])
        assert ours["input_gain"] == pytest.approx(listed["magnitude_ema"] ** -0.5, rel=1e-6)


def test_batch_invariance_noise_modes_and_truncation(sg3):
    from bakery.images.generator import Renderer, input_transform

    renderer = Renderer(sg3.generator, 4)
    seeds, psis = [3, 0, 3, 7], [0.5, 0.7, 1.0, -0.3]
    modes = ["const", "seeded", "random", "none"]
    transforms = [None, input_transform((0.1, 0.2), 10), None, input_transform(None, -45)]
    batch = renderer.render_seeds(seeds, psis, modes, transforms=transforms)
    for i in range(4):  # a batch gives the same pixels as one by one, whatever the neighbours
        one = renderer.render_seeds([seeds[i]], [psis[i]], [modes[i]], transforms=[transforms[i]])
        np.testing.assert_array_equal(one["image"][0], batch["image"][i])
        np.testing.assert_array_equal(one["uint8"][0], batch["uint8"][i])
    # StyleGAN3 has no noise inputs: every noise mode is the same picture, bit for bit
    same = renderer.render_seeds([3] * 4, [0.5] * 4, modes)
    for i in range(1, 4):
        np.testing.assert_array_equal(same["image"][0], same["image"][i])
    avg = sg3.generator.dlatent_avg.numpy()
    zero = renderer.render_seeds([5], [0.0], ["const"])["ws"][0]
    np.testing.assert_allclose(zero[:4], np.tile(avg, (4, 1)), atol=1e-6)  # psi 0 = w_avg on rows < cutoff
    assert np.abs(zero[4:] - avg).max() > 0.1  # the rest untouched


def test_transform_needs_a_stylegan3_model():
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer, input_transform

    renderer = Renderer(load_generator(SG2_PKL).generator)
    with pytest.raises(CheckpointError, match="only StyleGAN3 models take an input transform; this model is "
                                              "StyleGAN 2"):
        renderer.render_seeds([0], [0.7], ["const"], transforms=[input_transform((0.1, 0), 0)])
    renderer.render_seeds([0], [0.7], ["const"], transforms=[input_transform(None, None)])  # identity: fine


# -- hostile and broken snapshots ---------------------------------------------------------------

class System:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _snapshot(tmp_path: Path, mutate=None, module_src: str | None = None, name: str = "sg3.pkl") -> Path:
    from bakery.images.torch_pickle import load_torch_pickle

    g = load_torch_pickle(SG3_PKL).generator()
    if mutate is not None:
        mutate(g)
    path = tmp_path / name
    kwargs = {} if module_src is None else {"module_src": module_src}
    path.write_bytes(dumps_snapshot({"G_ema": persistent(g, **kwargs)}))
    return path


def test_payload_in_the_stylegan3_module_source_is_never_run(tmp_path):
    from bakery.images.checkpoints import load_generator

    marker = tmp_path / "marker"
    src = f"import os\nos.system('touch {marker}')\nopen({str(marker)!r}, 'w').write('pwned')\n"
    model = load_generator(_snapshot(tmp_path, module_src=src))  # a valid network: it loads and renders
    assert model.generator.kind == "StyleGAN3-T" and not marker.exists()


def test_object_array_in_a_layer_state_is_refused(tmp_path):
    """numpy arrays are admitted (in_size, out_size), but not object arrays: their elements would
    be unpickled objects, here an os.system call."""
    from bakery.images.torch_pickle import load_torch_pickle

    marker = tmp_path / "marker"
    evil = np.empty(2, dtype=object)
    evil[0], evil[1] = System(marker), 36
    path = _snapshot(tmp_path, lambda g: g.child("synthesis").child("L0_36_32").attrs.update(in_size=evil))
    with pytest.raises(CheckpointError, match="object array dtype|refusing to load"):
        load_torch_pickle(path)
    assert not marker.exists()


def test_numpy_2_spelling_of_the_numpy_globals_loads(tmp_path):
    """numpy 2 writes numpy._core.multiarray; NVIDIA's files say numpy.core.multiarray: both load."""
    from bakery.images.torch_pickle import load_torch_pickle

    data = _snapshot(tmp_path).read_bytes()
    assert data.count(b"numpy.core.multiarray") > 0
    respelled = tmp_path / "numpy2.pkl"
    respelled.write_bytes(data.replace(b"\x15numpy.core.multiarray", b"\x16numpy._core.multiarray"))
    g = load_torch_pickle(respelled).generator()
    assert list(g.child("synthesis").child("L0_36_32").attrs["in_size"]) == [36, 36]


def _layer(name):
    return lambda g: g.child("synthesis").child(name)


@pytest.mark.parametrize("mutate, message", [
    (lambda g: _layer("L4_52_32")(g).attrs.update(padding=[-6, -9, -6, -7]), r"give 52×53, not the stated out_size"),
    (lambda g: _layer("L4_52_32")(g).attrs.update(in_size=np.array([40, 40])),
     r"L4_52_32: takes 32 channels of \[40, 40\], but the layer before gives 32 of \[36, 36\]"),
    (lambda g: _layer("L0_36_32")(g).buffers.update(magnitude_ema=np.float32(0.0)), "magnitude_ema 0.0 is not positive"),
    (lambda g: _layer("L2_36_32")(g).buffers.pop("down_filter"), "has no down_filter buffer"),
    (lambda g: _layer("L2_36_32")(g).buffers.update(up_filter=np.ones((3, 4), np.float32)), r"up_filter has shape \[3, 4\]"),
    (lambda g: g.child("synthesis").attrs["layer_names"].pop(), "layer_names .* do not match"),
    (lambda g: _layer("L5_52_32")(g).params.update(weight=np.zeros((32, 32, 5, 5), np.float32)),
     r"L5_52_32.weight' has shape \[32, 32, 5, 5\], expected \[32, 32, 3, 3\]"),
    (lambda g: g.child("synthesis").child("input").buffers.update(extra=np.zeros(3, np.float32)),
     "does not know: synthesis.input.extra"),
    (lambda g: g.child("synthesis").attrs.update(output_scale="0.25"), r"output_scale='0.25' is not a number"),
    (lambda g: _layer("L1_36_32")(g).attrs.update(is_torgb="no"), "is_torgb='no' is not true or false"),
    (lambda g: _layer("L1_36_32")(g).attrs.update(conv_clamp=float("nan")), "conv_clamp=nan is not a number"),
    (lambda g: g.child("synthesis").child("input").attrs.update(size=np.array([36, 36, 36])),
     r"synthesis.input.size=.* is not a size"),
])
def test_broken_snapshots_are_clear_errors(tmp_path, mutate, message):
    from bakery.images.checkpoints import load_generator

    with pytest.raises(CheckpointError, match=message):
        load_generator(_snapshot(tmp_path, mutate))


def test_the_stored_input_transform_is_replaced_by_the_render_s_own(tmp_path):
    """gen_images.py overwrites G.synthesis.input.transform before every call; so does the bakery:
    a checkpoint saved with another matrix renders as NVIDIA's script would render it."""
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer

    moved = _snapshot(tmp_path, lambda g: g.child("synthesis").child("input").buffers.update(
        transform=np.array([[1, 0, 0.4], [0, 1, 0], [0, 0, 1]], np.float32)))
    a = Renderer(load_generator(moved).generator).render_seeds([1], [0.7], ["const"])
    ref = np.load(SG3_DIR / "cases" / "seed0001_psi0.70_cutall_const.npz")
    _assert_within(_errors(a, ref), "stored transform")


# -- config, bake, quick path -----------------------------------------------------------------------

SG3_BANDS = """
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
    {extra}
    """


def test_band_translate_rotate_config(tmp_path):
    from bakery.config import load_config
    from bakery.errors import ConfigError

    extra = "translate = [0.25, -0.15]\n    rotate = 20"
    bands = load_config(project(tmp_path, SG3_BANDS.format(model=SG3_PKL, extra=extra))).images.bands
    assert [(b.translate, b.rotate, b.transformed) for b in bands] == \
        [(None, None, False), (None, None, False), ((0.25, -0.15), 20.0, True)]
    for bad, message in [("translate = [1]", r"bands\[2\]\.translate: must be two numbers \[tx, ty\]"),
                         ('translate = ["a", 0]', r"bands\[2\]\.translate: must be two numbers"),
                         ("translate = [nan, 0]", r"bands\[2\]\.translate: must be finite"),
                         ("rotate = 400", r"bands\[2\]\.rotate"), ('rotate = "20"', r"bands\[2\]\.rotate: must be a number"),
                         ("rotat = 20", r"rotat")]:
        with pytest.raises(ConfigError, match=message):
            load_config(project(tmp_path, SG3_BANDS.format(model=SG3_PKL, extra=bad)))


def test_translate_on_a_stylegan2_model_is_refused_before_rendering(tmp_path, capsys):
    config = project(tmp_path, SG3_BANDS.format(model=SG2_PKL, extra="rotate = 15"))
    assert main(["-q", "-c", str(config), "generate"]) != 0
    err = capsys.readouterr().err
    assert "images.bands[2].rotate: only StyleGAN3 models take translate/rotate" in err and "StyleGAN 2" in err
    assert not list((tmp_path / "build" / "raw").glob("example-*.png"))


@pytest.mark.slow
def test_three_band_generate_matches_nvidia_and_resumes(tmp_path):
    """The generate stage on the StyleGAN3 snapshot: three bands (one transformed), the pixels of
    NVIDIA's gen_images.py, a no-op rerun, and a changed transform re-renders only its band."""
    extra = "translate = [0.25, -0.15]\n    rotate = 20"
    config = project(tmp_path, SG3_BANDS.format(model=SG3_PKL, extra=extra))
    assert main(["-q", "-c", str(config), "generate"]) == 0
    raw = tmp_path / "build" / "raw"
    assert sorted(digests(raw)) == sorted(f"example-{i}.png" for i in range(7))
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["generator"] == "StyleGAN3-T" and manifest["resolution"] == 64
    assert manifest["images"]["5"]["translate"] == [0.25, -0.15] and manifest["images"]["5"]["rotate"] == 20.0
    assert "translate" not in manifest["images"]["0"]
    for image_id, case in [(0, "seed0000_psi0.70_cutall_const"), (3, "seed0003_psi1.00_cutall_none")]:
        ref = np.load(SG3_DIR / "cases" / f"{case}.npz")["image_uint8"][0]
        png = np.asarray(Image.open(raw / f"example-{image_id}.png"))
        assert np.abs(png.astype(int) - ref).max() <= 1 and (png != ref).mean() <= TOL["image_uint8_max_fraction_differing"]
    before = {p.name: p.stat().st_mtime_ns for p in raw.glob("example-*.png")}
    assert main(["-q", "-c", str(config), "generate"]) == 0  # a rerun is a no-op
    assert {p.name: p.stat().st_mtime_ns for p in raw.glob("example-*.png")} == before
    old = digests(raw)
    project(tmp_path, SG3_BANDS.format(model=SG3_PKL, extra="rotate = -20"))
    assert main(["-q", "-c", str(config), "generate"]) == 0
    changed = {name for name, digest in digests(raw).items() if old[name] != digest}
    assert changed == {"example-5.png", "example-6.png"}


@pytest.mark.slow
@pytest.mark.parametrize("model, transform", [
    (SG3_PKL, "translate = [0.25, -0.15]\n        rotate = 20"),
    (FIXTURES / "stylegan2_ada" / "stylegan2_ada_synthetic_r64.pkl", ""),
], ids=["stylegan3", "ada"])
def test_three_band_bake_from_a_pytorch_snapshot(tmp_path, monkeypatch, model, transform):
    """The whole bake (images → upscale → compress → text → site) through the CLI, on the
    StyleGAN3 checkpoint (one band transformed) and on the stylegan2-ada-pytorch one."""
    import re

    from tests.conftest import write_project
    from text_support import build_tiny_gpt2, tiny_toml

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm = build_tiny_gpt2(tmp_path / "gpt2")
    path = write_project(tmp_path / "site", f"""
        [images]
        model = "{model}"
        batch_size = 2

        [[images.bands]]
        seeds = "0-1"
        psi = 0.5

        [[images.bands]]
        seeds = "2-3"
        psi = 0.7
        {transform}

        [[images.bands]]
        seeds = "4-5"
        psi = 1.0

        [upscale]
        method = "lanczos"
    """ + tiny_toml(lm))
    assert main(["-q", "-c", str(path), "bake"]) == 0
    public = tmp_path / "site" / "public"
    for i in range(6):
        with Image.open(public / f"example-{i}.jpg") as im:
            assert im.format == "JPEG" and im.size == (128, 128)  # 64 px, upscaled 2x
        assert (public / f"snippet-{i}.txt").read_text(encoding="utf-8").strip()
    html = (public / "index.html").read_text()
    data = json.loads(re.search(r'id="bakery-data">(.*?)</script>', html, re.S).group(1))
    assert [(b["psi"], b["ranges"]) for b in data["bands"]] == [(0.5, [[0, 1]]), (0.7, [[2, 3]]), (1.0, [[4, 5]])]
    raw = tmp_path / "site" / "build" / "raw"
    if model == SG3_PKL:  # the transformed band is NVIDIA's gen_images.py --translate --rotate picture
        ref = np.load(SG3_DIR / "cases" / "seed0002_psi0.70_cutall_const_tx+0.25_ty-0.15_rot+20.npz")
        limit = TOL["image_uint8_max_fraction_differing"]
    else:
        ref = np.load(FIXTURES / "stylegan2_ada" / "cases" / "seed0002_psi0.70_cutall_const.npz")
        limit = 1e-3
    png = np.asarray(Image.open(raw / "example-2.png"))
    ref = ref["image_uint8"][0]
    assert np.abs(png.astype(int) - ref).max() <= 1 and (png != ref).mean() <= limit


def test_quick_generate_with_a_stylegan3_snapshot(tmp_path, capsys):
    from bakery.images.quick import read_record

    out = tmp_path / "out"
    assert main(["-q", "generate", "--model", str(SG3_PKL), "--seeds", "0-3", "--psi", "0.7", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"seed{s:04d}.png" for s in range(4)]
    for s in range(4):
        ref = np.load(SG3_DIR / "cases" / f"seed{s:04d}_psi0.70_cutall_const.npz")["image_uint8"][0]
        png = np.asarray(Image.open(out / f"seed{s:04d}.png"))
        assert np.abs(png.astype(int) - ref).max() <= 1 and (png != ref).mean() <= TOL["image_uint8_max_fraction_differing"]
    assert "translate" not in read_record(out / "seed0000.png")
    # gen_images.py's --translate / --rotate
    moved = tmp_path / "moved"
    assert main(["-q", "generate", "--model", str(SG3_PKL), "--seeds", "1", "--psi", "0.7", "--translate",
                 "0.25,-0.15", "--rotate", "20", "--out", str(moved)]) == 0
    ref = np.load(SG3_DIR / "cases" / "seed0001_psi0.70_cutall_const_tx+0.25_ty-0.15_rot+20.npz")["image_uint8"][0]
    png = np.asarray(Image.open(moved / "seed0001.png"))
    assert np.abs(png.astype(int) - ref).max() <= 1 and (png != ref).mean() <= TOL["image_uint8_max_fraction_differing"]
    assert read_record(moved / "seed0001.png")["translate"] == [0.25, -0.15]
    capsys.readouterr()
    for model, argv, message in [(SG3_PKL, ["--translate", "0.1"], "--translate: expected two numbers TX,TY"),
                                 (SG3_PKL, ["--rotate", "nan"], "--rotate: nan degrees is out of range"),
                                 (SG2_PKL, ["--rotate", "10"], "--rotate: only StyleGAN3 models")]:
        args = ["-q", "generate", "--model", str(model), "--seeds", "0", "--out", str(tmp_path / "bad")] + argv
        assert main(args) != 0
        assert message in capsys.readouterr().err
    assert main(["-q", "generate", "--rotate", "10"]) != 0
    assert "--rotate needs --model" in capsys.readouterr().err
