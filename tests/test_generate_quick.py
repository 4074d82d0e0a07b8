"""The project-free quick path: `bakery generate --model`, `figures --model`, `upscale --in/--out`,
and the NVIDIA-style seed lists they (and [[images.bands]]) take."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from bakery.cli import main
from bakery.config import load_config
from bakery.errors import ConfigError
from bakery.seeds import SeedListError, format_seeds, parse_seed_ranges, parse_seeds
from tests.conftest import FIXTURES, write_project

SG2_PKL = FIXTURES / "stylegan2" / "stylegan2_tf1_synthetic_r64.pkl"


# --- seed lists ---------------------------------------------------------------------------

def test_seed_lists_as_nvidia_parse_range():
    assert parse_seeds("0-9,20,30-35") == list(range(10)) + [20] + list(range(30, 36))
    assert parse_seeds(" 7 ") == [7]
    assert parse_seeds("3,1-3") == [3, 1, 2]  # order kept, a repeat kept once
    assert parse_seed_ranges("5-6, 9") == [(5, 6), (9, 9)]
    assert parse_seeds(f"{2**32 - 1}") == [2**32 - 1]
    assert format_seeds([0, 1, 2, 7, 9, 10]) == "0-2,7,9-10"


@pytest.mark.parametrize("text,problem", [
    ("", "must look like"), ("0-x", "got '0-x', which is not a seed or range"),
    ("5-2", "got '5-2', which runs backwards (write 2-5)"), ("0-9,5-2", "got '0-9,5-2': '5-2' runs backwards"),
    ("1,,2", "'' is not a seed"), ("-3", "'-3'"), (f"0-{2**32}", "above 2**32-1"),
])
def test_bad_seed_lists_say_what_is_wrong(text, problem):
    with pytest.raises(SeedListError) as err:
        parse_seeds(text)
    assert problem in str(err.value)
    assert f"({text!r})" not in str(err.value)  # never "got '5-2' ('5-2')"


def test_bands_take_comma_lists_and_must_still_tile(tmp_path):
    path = write_project(tmp_path, """
        [[images.bands]]
        seeds = "0-9,20-29"
        psi = 0.8
        [[images.bands]]
        seeds = "10-19"
        psi = 0.6
    """, with_site_dirs=False)
    images = load_config(path).images
    assert images.ids == list(range(30))
    assert [(b.first, b.last, b.psi) for b in images.bands] == [(0, 9, 0.8), (10, 19, 0.6), (20, 29, 0.8)]
    assert images.band_of(25).psi == 0.8
    overlap = write_project(tmp_path / "o", """
        [[images.bands]]
        seeds = "0-9,15"
        psi = 0.8
        [[images.bands]]
        seeds = "10-19"
        psi = 0.6
    """, with_site_dirs=False)
    with pytest.raises(ConfigError, match=r"images.bands\[0\]: seed 15 overlaps bands\[1\] \(10-19\)"):
        load_config(overlap)


# --- generate --model -----------------------------------------------------------------------

def test_generate_model_from_an_empty_folder_matches_the_renderer(tmp_path, monkeypatch, capsys):
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer

    monkeypatch.chdir(tmp_path)  # no content/, templates/ or static/ anywhere
    assert main(["generate", "--model", str(SG2_PKL), "--seeds", "0-2,7", "--psi", "0.7"]) == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    err = capsys.readouterr().err
    assert "4 of 4 seed(s) to render" in err and "wrote 4 image(s) (seeds 0-2,7)" in err
    expected = Renderer(load_generator(SG2_PKL).generator).render_seeds([7, 1], [0.7, 0.7], ["const"] * 2)["uint8"]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "seed0007.png")), expected[0])
    np.testing.assert_array_equal(np.asarray(Image.open(out / "seed0001.png")), expected[1])
    record = json.loads(Image.open(out / "seed0007.png").text["bakery"])
    assert record["seed"] == 7 and record["psi"] == 0.7 and record["noise"] == "const"


def test_generate_model_resumes_and_redoes_what_changed(tmp_path, capsys):
    out = tmp_path / "faces"
    args = ["-q", "generate", "--model", str(SG2_PKL), "--seeds", "0-3", "--psi", "0.5", "--out", str(out)]
    assert main(args) == 0
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    data = (out / "seed0002.png").read_bytes()
    (out / "seed0002.png").write_bytes(data[: len(data) // 2])  # cut short, as a crash without rename would
    (out / ".tmp-seed0003.png.x").write_bytes(b"half")  # a crashed write's leftover
    assert main(["-v"] + args[1:]) == 0
    assert "1 of 4 seed(s) to render" in capsys.readouterr().err
    assert (out / "seed0002.png").read_bytes() == data
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "seed0002.png"} == \
        {k: v for k, v in mtimes.items() if k != "seed0002.png"}
    assert main(args[:-4] + ["--psi", "0.6", "--out", str(out)]) == 0  # new psi: everything again
    assert all(p.stat().st_mtime_ns > mtimes[p.name] for p in out.iterdir())


def test_upscale_folder_engine_is_recorded_and_a_switch_redoes(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "up"
    src.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (10, 14, 3), np.uint8)).save(src / "a.png")
    manifest = dst / ".bakery-upscale.json"
    assert main(["-q", "upscale", "-i", str(src), "-o", str(dst)]) == 0
    assert json.loads(manifest.read_text())["settings"]["engine"] == "ncnn"
    by_ncnn = np.asarray(Image.open(dst / "a.png")).astype(int)
    assert main(["-q", "upscale", "-i", str(src), "-o", str(dst), "--engine", "tensorflow"]) == 0
    assert json.loads(manifest.read_text())["settings"]["engine"] == "tensorflow"
    by_tf = np.asarray(Image.open(dst / "a.png")).astype(int)
    assert by_tf.shape == by_ncnn.shape == (20, 28, 3) and np.abs(by_tf - by_ncnn).max() <= 1


@pytest.mark.parametrize("argv,message", [
    (["--model", "missing.pkl", "--seeds", "0-3"], "--model: file not found: missing.pkl"),
    (["--model", str(SG2_PKL), "--seeds", "0-x"], "--seeds: must look like"),
    (["--model", str(SG2_PKL), "--seeds", f"0,{2**32}"], "--seeds: seed 4294967296 is above 2**32-1"),
    (["--model", str(SG2_PKL)], "--model needs --seeds"),
    (["--seeds", "0-3"], "--seeds needs --model"),
    (["--model", str(SG2_PKL), "--seeds", "1", "--psi", "3"], "--psi: 3 is out of range"),
    (["--model", str(SG2_PKL), "--seeds", "1", "--batch-size", "0"], "--batch-size must be between 1 and 64"),
])
def test_generate_model_errors_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["generate"] + argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bakery: error:") and "\n" not in err and message in err
    assert list(tmp_path.iterdir()) == []


# --- figures --model ------------------------------------------------------------------------

@pytest.mark.slow
def test_figures_model_needs_no_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "figures", "--model", str(SG2_PKL), "--psi", "0.5", "--out", "figs"]) == 0
    sheet = Image.open(tmp_path / "figs" / "contact-sheet.png")
    sweep = Image.open(tmp_path / "figs" / "truncation-sweep.png")
    assert sheet.size == (1280, 1280)  # 10 × 10 cells of 128 px (the model draws 64 px)
    assert sweep.width == 8 * 128 and sweep.height > 6 * 128  # + the psi label strip


def test_figure_cells_and_labels():
    from bakery.images.figures import cell_size, label_columns, psi_label

    assert [cell_size(r) for r in (32, 64, 128, 256, 512, 1024)] == [128, 128, 128, 256, 256, 256]
    assert psi_label(-0.25) == "psi = -0.25"
    labelled = label_columns(np.zeros((128, 256, 3), np.uint8), ["psi = 1", "psi = 0"], 128)
    strip = labelled[: labelled.shape[0] - 128]
    for col in (strip[:, :128], strip[:, 128:]):  # a label over each column
        assert (col < 100).any() and (col > 250).mean() > 0.8


# --- upscale --in/--out ---------------------------------------------------------------------

def test_upscale_any_folder(tmp_path, capsys):
    from bakery.upscale.engines import make_waifu2x

    src, dst = tmp_path / "in", tmp_path / "up"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (12, 16, 3), np.uint8)).save(src / "a.png")
    Image.fromarray(rng.integers(0, 255, (10, 10, 3), np.uint8)).save(src / "b.jpg", quality=90)
    (src / "notes.txt").write_text("not an image")
    assert main(["-q", "upscale", "-i", str(src), "-o", str(dst), "-n", "-1"]) == 0
    assert sorted(p.name for p in dst.glob("*.png")) == ["a.png", "b.png"]
    expected = make_waifu2x("ncnn", "none").upscale_images([Image.open(src / "a.png")])[0]
    np.testing.assert_array_equal(np.asarray(Image.open(dst / "a.png")), np.asarray(expected))
    assert Image.open(dst / "b.png").size == (20, 20)
    before = (dst / "a.png").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["upscale", "--in", str(src), "--out", str(dst), "-n", "-1"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "0 of 2 image(s)" in err[0] and (dst / "a.png").stat().st_mtime_ns == before
    assert err[-1] == f"upscale: nothing to do: the 2 image(s) in {dst} are up to date"
    assert main(["upscale", "-i", str(src), "-o", str(tmp_path / "x4"), "-n", "1", "-s", "4"]) == 0
    assert Image.open(tmp_path / "x4" / "a.png").size == (64, 48)
    last = capsys.readouterr().err.strip().splitlines()[-1]  # like generate --model, a closing summary
    assert re.fullmatch(rf"upscale: wrote 2 image\(s\) \(4x\) to {re.escape(str(tmp_path / 'x4'))} in \d+\.\d s", last)


@pytest.mark.parametrize("argv,message", [
    (["-i", "nowhere", "-o", "out"], "--in: file or folder not found: nowhere"),
    (["-i", "src"], "upscale needs both --in and --out"),
    (["-i", "src", "-o", "out", "-n", "5"], "-n/--noise: must be -1 (none), 0, 1, 2 or 3"),
    (["-i", "src", "-o", "out", "-s", "3"], "-s/--scale: must be 2, 4, 8"),
    (["-i", "src", "-o", "out", "-s", str(2**40)], f"-s/--scale: must be 2, 4, 8, 16 or 32 (waifu2x enlarges 2x "
                                                   f"per pass), got {2**40}"),
    (["-i", "src", "-o", "src"], "--out must differ from --in"),
    (["-i", "empty", "-o", "out"], "--in: empty holds no images"),
    (["--engine", "tensorflow"], "-n/-s/-f/-t/--engine need --in and --out"),
    (["-t", "64"], "-n/-s/-f/-t/--engine need --in and --out"),
    (["-f", "webp"], "-n/-s/-f/-t/--engine need --in and --out"),
    (["-i", "src", "-o", "out", "-t", "8"], "-t/--tile-size: must be 0 (auto) or 16-4096 pixels, got 8"),
    (["-i", "src", "-o", "out", "-t", "-1"], "-t/--tile-size: must be 0 (auto) or 16-4096 pixels, got -1"),
    (["-i", "src/a.png", "-o", "out.bmp"], "-o out.bmp: name the output .png, .jpg or .webp"),
    (["-i", "src/a.png", "-o", "out.png", "-f", "jpg"], "-o out.png: the name says png but -f says jpg"),
    (["-i", "src/a.png", "-o", "src"], "-o src: is a folder, but -i src/a.png is one file"),
    (["-i", "src/a.png", "-o", "src/a.png"], "--out must differ from --in (src/a.png)"),
    (["-i", "src/notes.txt", "-o", "out.png"], "src/notes.txt: cannot decode the image"),
])
def test_upscale_folder_errors(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "empty").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "src" / "a.png")
    (tmp_path / "src" / "notes.txt").write_text("not an image")
    assert main(["upscale"] + argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bakery: error:") and "\n" not in err and message in err
    assert sorted(os.listdir(tmp_path)) == ["empty", "src"]  # nothing written anywhere
    assert sorted(os.listdir(tmp_path / "src")) == ["a.png", "notes.txt"]


def test_upscale_one_file_in_each_format(tmp_path, capsys):
    """-i a.png -o b.png as waifu2x-ncnn-vulkan: the output's name gives its format, no manifest."""
    from bakery.upscale.engines import make_waifu2x

    src = tmp_path / "a.png"
    rng = np.random.default_rng(3)
    rgba = np.dstack([rng.integers(0, 255, (14, 18, 3), np.uint8), np.full((14, 18), 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(src)
    assert main(["upscale", "-i", str(src), "-o", str(tmp_path / "out" / "b.png")]) == 0
    assert "upscale: wrote " in capsys.readouterr().err
    expected = np.asarray(make_waifu2x("ncnn", "0").upscale_images([Image.open(src)])[0])  # -n 0: the default
    png = np.asarray(Image.open(tmp_path / "out" / "b.png"))
    assert png.shape == (28, 36, 4)
    np.testing.assert_array_equal(png, expected)
    assert sorted(os.listdir(tmp_path / "out")) == ["b.png"]  # one file: no manifest beside it
    assert main(["-q", "upscale", "-i", str(src), "-o", str(tmp_path / "b.webp"), "-f", "webp"]) == 0
    with Image.open(tmp_path / "b.webp") as webp:
        assert webp.format == "WEBP"
        np.testing.assert_array_equal(np.asarray(webp), expected)  # lossless, alpha kept
    assert main(["-q", "upscale", "-i", str(src), "-o", str(tmp_path / "b.JPEG")]) == 0
    with Image.open(tmp_path / "b.JPEG") as jpg:
        assert jpg.format == "JPEG" and jpg.mode == "RGB" and jpg.size == (36, 28)
        over_white = (expected[..., :3] * (200 / 255) + 255 * (55 / 255)).astype(int)
        assert np.abs(np.asarray(jpg).astype(int) - over_white).mean() < 6  # noise is JPEG's worst case


def test_upscale_tile_size_gives_the_untiled_result(tmp_path, monkeypatch):
    """-t is waifu2x-ncnn-vulkan's tile size (0 = auto): it reaches the engine and changes nothing."""
    import bakery.upscale.engines as engines
    from tests.test_waifu2x import assert_uint8_close

    tiles = []
    real = engines.make_waifu2x

    def spy(engine, noise, **kwargs):
        tiles.append(kwargs["tile_size"])
        return real(engine, noise, **kwargs)

    monkeypatch.setattr(engines, "make_waifu2x", spy)
    src = tmp_path / "in"
    src.mkdir()
    picture = np.asarray(Image.open(FIXTURES / "waifu2x" / "test_96x80.png").convert("RGB"))
    Image.fromarray(picture).save(src / "face.png")
    assert main(["-q", "upscale", "-i", str(src), "-o", str(tmp_path / "auto"), "-n", "-1", "-t", "0"]) == 0
    assert main(["-q", "upscale", "-i", str(src / "face.png"), "-o", str(tmp_path / "t16.png"), "-n", "-1",
                 "-t", "16"]) == 0
    assert main(["-q", "upscale", "-i", str(src), "-o", str(tmp_path / "t37"), "-n", "-1", "-t", "37"]) == 0
    assert tiles == [512, 16, 37]
    whole = np.asarray(Image.open(tmp_path / "auto" / "face.png"))
    for tiled in (tmp_path / "t16.png", tmp_path / "t37" / "face.png"):
        assert_uint8_close(np.asarray(Image.open(tiled)), whole)


def test_upscale_folder_in_another_format_resumes(tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "up"
    src.mkdir()
    rng = np.random.default_rng(4)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (10, 12, 3), np.uint8)).save(src / name)
    assert main(["-q", "upscale", "-i", str(src), "-o", str(dst), "-f", "webp"]) == 0
    assert sorted(p.name for p in dst.iterdir() if not p.name.startswith(".")) == ["a.webp", "b.webp"]
    assert json.loads((dst / ".bakery-upscale.json").read_text())["settings"]["format"] == "webp"
    before = (dst / "a.webp").stat().st_mtime_ns
    assert main(["upscale", "-i", str(src), "-o", str(dst), "-f", "webp"]) == 0
    assert "0 of 2 image(s)" in capsys.readouterr().err and (dst / "a.webp").stat().st_mtime_ns == before


# --- --class for class-conditional checkpoints ------------------------------------------------

VARIANTS = FIXTURES / "stylegan2_ada_variants"
COND_PKL = VARIANTS / "orig_c4_r16.pkl"  # c_dim 4; references use class (2·seed + 1) mod 4


def nvidia_reference(seed: int) -> np.ndarray:
    return np.load(VARIANTS / "cases" / f"orig_c4_r16_seed{seed}_psi0.7_cutall_const.npz")["image_uint8"][0]


def assert_close_to(path, reference: np.ndarray) -> None:
    """Within the uint8 tolerance of the stylegan2_ada fixture (float32 TF vs PyTorch)."""
    tol = json.loads((FIXTURES / "stylegan2_ada" / "manifest.json").read_text())["tolerances"]
    diff = np.abs(np.asarray(Image.open(path)).astype(int) - reference.astype(int))
    assert diff.max() <= tol["image_uint8_max_abs"], diff.max()


@pytest.mark.slow
def test_generate_class_matches_nvidia_and_a_new_class_re_renders(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["generate", "--model", str(COND_PKL), "--seeds", "0-1", "--psi", "0.7", "--out", str(out)]
    assert main(args + ["--class", "1"]) == 0
    assert_close_to(out / "seed0000.png", nvidia_reference(0))  # seed 0's reference is class 1
    assert json.loads(Image.open(out / "seed0000.png").text["bakery"])["class"] == 1
    first = (out / "seed0001.png").read_bytes()
    assert main(args + ["--class", "1"]) == 0
    assert "0 of 2 seed(s) to render" in capsys.readouterr().err
    assert main(args + ["--class", "3"]) == 0
    err = capsys.readouterr().err
    assert "2 of 2 seed(s) to render" in err and "class 3, model orig_c4_r16.pkl" in err
    assert (out / "seed0001.png").read_bytes() != first
    assert_close_to(out / "seed0001.png", nvidia_reference(1))  # seed 1's reference is class 3


@pytest.mark.parametrize("argv,message", [
    (["--model", str(COND_PKL), "--seeds", "0"],
     "--model orig_c4_r16.pkl: the model is class-conditional (4 classes): pass --class N, N in 0-3"),
    (["--model", str(COND_PKL), "--seeds", "0", "--class", "4"],
     "--class 4: out of range: orig_c4_r16.pkl has classes 0-3"),
    (["--model", str(SG2_PKL), "--seeds", "0", "--class", "1"],
     f"--class 1: {SG2_PKL.name} is not class-conditional; drop --class"),
    (["--seeds", "0", "--class", "1"], "--seeds needs --model (without it, seeds, psi and class come from "
                                       "[[images.bands]] in site.toml)"),
    (["--class", "1"], "--class needs --model (without it, seeds, psi and class come from "
                       "[[images.bands]] in site.toml)"),
])
def test_generate_class_errors_are_one_line_and_render_nothing(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "generate"] + argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"bakery: error: {message}"
    assert list(tmp_path.glob("**/*.png")) == []


@pytest.mark.slow
def test_figures_model_with_a_class(tmp_path, monkeypatch, capsys):
    from bakery.images.checkpoints import load_generator
    from bakery.images.figures import grid
    from bakery.images.generator import Renderer

    monkeypatch.chdir(tmp_path)
    assert main(["-q", "figures", "--model", str(SG2_PKL), "--class", "1"]) == 1
    assert capsys.readouterr().err.strip() == \
        f"bakery: error: --class 1: {SG2_PKL.name} is not class-conditional; drop --class"
    assert main(["-q", "figures", "--model", str(COND_PKL), "--class", "2", "--psi", "0.7", "--out", "figs"]) == 0
    sheet = np.asarray(Image.open(tmp_path / "figs" / "contact-sheet.png"))
    renderer = Renderer(load_generator(COND_PKL).generator)
    cell = sheet.shape[0] // 10
    seed0 = renderer.render_seeds([0], [0.7], ["const"], classes=[2])["uint8"]
    np.testing.assert_array_equal(sheet[:cell, :cell], grid(seed0, 1, cell))
