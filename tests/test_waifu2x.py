"""waifu2x upconv_7: weight parsing, parity with the ncnn reference outputs, exact tiling, alpha and modes.

Everything a picture goes through runs on both engines (the `model` / `engine` fixtures are
parametrized over ncnn, the default, and TensorFlow), against the same fixture and tolerances.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bakery.errors import BakeryError
from bakery.upscale import ncnn_weights
from bakery.upscale.modes import split_modes
from bakery.upscale.ncnn_weights import MODEL_NAMES, load_network, load_waifu2x, model_paths, parse_param
from bakery.upscale.config import DEFAULT_ENGINE, ENGINES
from bakery.upscale.engines import gpu_available, make_waifu2x
from bakery.upscale.waifu2x import Waifu2x, bicubic_2x, tile_origins, to_uint8

FIXTURES = Path(__file__).parent / "fixtures" / "waifu2x"
# From the fixture README, for both engines: raw max |Δ| ≤ 1e-4; uint8 max |Δ| ≤ 1, mean < 0.05.
# Measured: ncnn 7.9e-6 raw (noise none) and 5.7e-6 (noise 1); TensorFlow 4.8e-6 and below.
RAW_TOLERANCE = 1e-4


def fixture_input() -> np.ndarray:
    return np.asarray(Image.open(FIXTURES / "test_96x80.png").convert("RGB"))


def assert_uint8_close(ours: np.ndarray, reference: np.ndarray) -> None:
    diff = np.abs(ours.astype(np.int16) - reference.astype(np.int16))
    assert diff.max() <= 1, f"max |Δ| = {diff.max()}"
    assert diff.mean() < 0.05, f"mean |Δ| = {diff.mean()}"


@pytest.fixture(scope="module", params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(engine) -> Waifu2x:
    return make_waifu2x(engine, "none", tile_size=512)


# --- weights --------------------------------------------------------------------------------


@pytest.mark.parametrize("noise", sorted(MODEL_NAMES))
def test_every_packaged_model_parses_as_upconv7(noise):
    net = load_waifu2x(noise)
    assert net.name == MODEL_NAMES[noise]
    assert [layer.weight.shape[0] for layer in net.layers] == [16, 32, 64, 128, 128, 256, 3]
    assert [layer.kind for layer in net.layers] == ["Convolution"] * 6 + ["Deconvolution"]
    assert all(layer.leaky_slope == pytest.approx(0.1) for layer in net.layers[:6])
    assert net.layers[-1].weight.shape == (3, 256, 4, 4) and net.layers[-1].leaky_slope is None
    assert (net.layers[-1].stride, net.layers[-1].pad) == (2, 3)
    assert net.context == 7 and net.scale == 2
    assert all(np.isfinite(layer.weight).all() for layer in net.layers)


def test_param_files_are_crlf_and_parse():
    param, _ = model_paths("none")
    text = param.read_bytes().decode("ascii")
    assert "\r\n" in text
    layers, blobs = parse_param(text)
    assert [layer.type for layer in layers] == ["Input"] + ["Convolution"] * 6 + ["Deconvolution"]
    assert layers[1].params[10] == (pytest.approx(0.1),)  # -23310=1,0.1: array key 10
    assert blobs == 8


def test_models_folder_comes_from_the_installed_package():
    folder = ncnn_weights.models_dir()
    assert folder.name == "models" and (folder / "WAIFU2X_ANIME_UP2X.bin").is_file()


def _tiny_model(tmp_path: Path, tag: int, weights: np.ndarray) -> tuple[Path, Path]:
    """A one-layer 1x1 convolution (2 in, 1 out) with the given storage tag."""
    param = tmp_path / "tiny.param"
    param.write_text("7767517\n2 2\nInput in 0 1 data\n"
                     "Convolution conv 1 1 data out 0=1 1=1 5=1 6=2\n")
    dtype = "<f2" if tag == ncnn_weights.TAG_FP16 else "<f4"
    body = struct.pack("<I", tag) + weights.astype(dtype).tobytes() + np.float32([0.5]).tobytes()
    bin_path = tmp_path / "tiny.bin"
    bin_path.write_bytes(body)
    return param, bin_path


@pytest.mark.parametrize("tag", [ncnn_weights.TAG_FP16, ncnn_weights.TAG_FP32])
def test_storage_tags_fp16_and_fp32(tmp_path, tag):
    net = load_network(*_tiny_model(tmp_path, tag, np.array([1.5, -2.25])))
    layer = net.layers[0]
    assert layer.weight.dtype == np.float32 and layer.weight.reshape(-1).tolist() == [1.5, -2.25]
    assert layer.bias.tolist() == [0.5]


def test_unknown_tag_is_an_error(tmp_path):
    param, bin_path = _tiny_model(tmp_path, 0x12345678, np.array([1.0, 2.0]))
    with pytest.raises(BakeryError, match="storage tag 0x12345678"):
        load_network(param, bin_path)


def test_truncated_and_oversized_bin_are_errors(tmp_path):
    param, bin_path = model_paths("none")
    data = bin_path.read_bytes()
    short = tmp_path / "short.bin"
    short.write_bytes(data[:-10])
    with pytest.raises(BakeryError, match=r"short\.bin: truncated"):
        load_network(param, short)
    long = tmp_path / "long.bin"
    long.write_bytes(data + b"\0" * 8)
    with pytest.raises(BakeryError, match="8 bytes left over"):
        load_network(param, long)


def test_not_a_param_file(tmp_path):
    bad = tmp_path / "bad.param"
    bad.write_text("hello\n")
    with pytest.raises(BakeryError, match="bad.param: not an ncnn .param"):
        load_network(bad, model_paths("none")[1])


# --- parity with the reference ----------------------------------------------------------------


@pytest.mark.parametrize("noise, stem", [("none", "WAIFU2X_ANIME_UP2X"), ("1", "WAIFU2X_ANIME_UP2X_DENOISE1X")])
def test_parity_with_ncnn_reference(noise, stem, engine, model):
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    assert any(entry.get("png") == f"test_96x80.{stem}.png" for entry in manifest["entries"])
    upscaler = model if noise == "none" else make_waifu2x(engine, noise)
    assert upscaler.engine == engine
    raw = upscaler.raw_arrays([fixture_input()])[0]
    reference_raw = np.load(FIXTURES / f"test_96x80.{stem}.npy")
    assert raw.shape == reference_raw.shape == (160, 192, 3)
    assert np.abs(raw - reference_raw).max() <= RAW_TOLERANCE
    reference = np.asarray(Image.open(FIXTURES / f"test_96x80.{stem}.png"))
    assert_uint8_close(to_uint8(raw), reference)
    # and the unclamped raw values really are rounded half up, then clamped
    assert (raw < 0).any() and (raw > 1).any()


def test_engines_agree_with_each_other():
    """The two engines side by side on a picture bigger than one tile, with mild noise."""
    rng = np.random.default_rng(3)
    picture = np.asarray(Image.fromarray(fixture_input()).resize((150, 130), Image.Resampling.BICUBIC))
    picture = np.clip(picture.astype(int) + rng.integers(-6, 7, picture.shape), 0, 255).astype(np.uint8)
    ncnn_raw, tf_raw = (make_waifu2x(e, "2", tile_size=64).raw_arrays([picture])[0] for e in ("ncnn", "tensorflow"))
    assert ncnn_raw.shape == tf_raw.shape == (260, 300, 3)
    assert np.abs(ncnn_raw - tf_raw).max() <= RAW_TOLERANCE
    assert_uint8_close(to_uint8(ncnn_raw), to_uint8(tf_raw))


def test_rounding_is_floor_plus_half_then_clamp():
    raw = np.float32([-0.7, 0.0, 0.5 / 255, 0.49 / 255, 1.0, 1.4, 254.5 / 255])
    assert to_uint8(raw).tolist() == [0, 0, 1, 0, 255, 255, 255]


# --- tiling -----------------------------------------------------------------------------------


def test_tile_origins_cover_with_equal_tiles():
    assert tile_origins(100, 40) == [0, 40, 60]
    assert tile_origins(80, 40) == [0, 40]
    assert tile_origins(30, 40) == [0]


@pytest.mark.parametrize("tile", [16, 37])
def test_tiled_output_equals_untiled(tile, engine, model):
    picture = fixture_input()
    whole = model.raw_arrays([picture])[0]
    tiled = make_waifu2x(engine, "none", tile_size=tile, batch_size=3).raw_arrays([picture])[0]
    assert np.abs(tiled - whole).max() <= RAW_TOLERANCE
    assert_uint8_close(to_uint8(tiled), to_uint8(whole))
    reference = np.asarray(Image.open(FIXTURES / "test_96x80.WAIFU2X_ANIME_UP2X.png"))
    assert_uint8_close(to_uint8(tiled), reference)


def test_batch_of_different_sizes_matches_one_by_one(model):
    picture = fixture_input()
    a, b = picture[:40, :52], picture[30:61, 10:33]
    together = model.raw_arrays([a, b])
    for part, joint in zip((a, b), together):
        alone = model.raw_arrays([part])[0]
        assert joint.shape == (2 * part.shape[0], 2 * part.shape[1], 3)
        assert np.abs(joint - alone).max() <= RAW_TOLERANCE


# --- alpha and modes --------------------------------------------------------------------------


def reference_bicubic_2x(channel: np.ndarray) -> np.ndarray:
    """The README's fixed 2x taps, applied separably with clamped indices."""
    even, odd = np.array([-9, 67, 225, -27]) / 256, np.array([-27, 225, 67, -9]) / 256

    def axis0(values):
        n = values.shape[0]
        out = np.zeros((2 * n,) + values.shape[1:])
        for i in range(n):
            rows = [values[min(max(j, 0), n - 1)] for j in range(i - 2, i + 2)]
            out[2 * i] = sum(w * r for w, r in zip(even, rows))
            rows = [values[min(max(j, 0), n - 1)] for j in range(i - 1, i + 3)]
            out[2 * i + 1] = sum(w * r for w, r in zip(odd, rows))
        return out

    up = axis0(axis0(channel.astype(np.float64)).T).T
    return np.clip(np.floor(up + 0.5), 0, 255).astype(np.uint8)


def test_alpha_bicubic_matches_the_reference_taps():
    rng = np.random.default_rng(4)
    alpha = rng.integers(0, 256, (9, 13)).astype(np.uint8)
    alpha[3:6, 4:9] = 255
    ours, reference = bicubic_2x(alpha), reference_bicubic_2x(alpha)
    assert ours.shape == (18, 26)
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1
    assert (bicubic_2x(np.full((5, 7), 200, np.uint8)) == 200).all()


def test_rgba_alpha_goes_around_the_network(model):
    picture = fixture_input()[:24, :20]
    alpha = np.tile(np.linspace(0, 255, 20).astype(np.uint8), (24, 1))
    rgba = Image.fromarray(np.dstack([picture, alpha]), "RGBA")
    out = model.upscale(rgba)
    assert out.mode == "RGBA" and out.size == (40, 48)
    result = np.asarray(out)
    assert (result[..., 3] == bicubic_2x(alpha)).all()
    rgb_only = model.upscale_arrays([picture])[0]
    assert (result[..., :3] == rgb_only).all()  # colour is not premultiplied or changed by alpha


@pytest.mark.parametrize("mode, expected", [
    ("RGB", "RGB"), ("L", "RGB"), ("1", "RGB"), ("P", "RGB"), ("LA", "RGBA"), ("PA", "RGBA"),
    ("I;16", "RGB"), ("I", "RGB"), ("F", "RGB"), ("CMYK", "RGB"), ("YCbCr", "RGB"), ("RGBa", "RGBA"),
])
def test_every_mode_upscales_without_crashing(mode, expected, model):
    base = Image.fromarray(fixture_input()[:12, :16])
    if mode in ("LA", "PA", "RGBa"):
        img = base.convert("RGBA").convert(mode)
    elif mode in ("I;16", "I", "F"):
        grey16 = Image.fromarray(np.asarray(base.convert("L")).astype("<u2") * 257)
        img = grey16 if mode == "I;16" else grey16.convert(mode)
    else:
        img = base.convert(mode)
    out = model.upscale(img)
    assert out.mode == expected and out.size == (32, 24)


def test_palette_transparency_becomes_alpha():
    img = Image.new("P", (6, 4), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.info["transparency"] = 1
    rgb, alpha = split_modes(img)
    assert alpha is not None and (alpha == 0).all() and (rgb[..., 0] == 255).all()


def test_sixteen_bit_grey_is_scaled_not_clipped():
    img = Image.fromarray(np.full((3, 3), 65535, "<u2"))
    rgb, alpha = split_modes(img)
    assert alpha is None and (rgb == 255).all()
    img = Image.fromarray(np.full((3, 3), 32896, "<u2"))
    assert (split_modes(img)[0] == 128).all()


def test_fixture_copy_is_intact():
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    for entry in manifest["entries"]:
        for key, file in (("sha256", "file"), ("png_sha256", "png"), ("npy_sha256", "npy")):
            if key in entry:
                digest = hashlib.sha256((FIXTURES / entry[file]).read_bytes()).hexdigest()
                assert digest == entry[key], entry[file]


# --- engines ----------------------------------------------------------------------------------


def test_default_engine_is_ncnn():
    from bakery.upscale import config

    assert DEFAULT_ENGINE == "ncnn" and make_waifu2x(noise="none").engine == "ncnn"
    assert config.ENGINES == ENGINES  # the config's copy (kept import-light) names the same engines


def test_unknown_engine_is_an_error():
    with pytest.raises(BakeryError, match="unknown waifu2x engine 'cuda'"):
        make_waifu2x("cuda", "none")


def test_gpu_off_means_cpu_and_the_vulkan_probe_stays_quiet(monkeypatch, capfd):
    from bakery.upscale import ncnn_engine

    assert gpu_available("ncnn", gpu=False) is False and gpu_available("tensorflow", gpu=False) is False
    assert make_waifu2x("ncnn", "none", gpu=False).on_gpu is False
    monkeypatch.setattr(ncnn_engine, "_gpu_count", None)  # probe again, watching fd 2
    count = ncnn_engine.vulkan_gpu_count()
    assert gpu_available("ncnn") is (count > 0)
    assert make_waifu2x("ncnn", "none").on_gpu is (count > 0)
    err = capfd.readouterr().err
    assert "dlopen" not in err and "vulkan driver" not in err  # no Vulkan here: CPU, silently


def test_ncnn_engine_runs_the_given_files(tmp_path):
    """Any waifu2x-format .param/.bin pair: ncnn runs exactly the files ncnn_weights checked."""
    from bakery.upscale.ncnn_engine import NcnnWaifu2x

    param, weights = model_paths("1")
    copy = tmp_path / "copy.param", tmp_path / "copy.bin"
    copy[0].write_bytes(param.read_bytes())
    copy[1].write_bytes(weights.read_bytes())
    ours = NcnnWaifu2x("none", paths=copy)  # the noise-1 weights, whatever `noise` says
    assert ours.network.name == "copy"
    raw = ours.raw_arrays([fixture_input()])[0]
    reference = np.load(FIXTURES / "test_96x80.WAIFU2X_ANIME_UP2X_DENOISE1X.npy")
    assert np.abs(raw - reference).max() <= RAW_TOLERANCE
    copy[1].write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(BakeryError, match=r"copy\.bin: truncated"):
        NcnnWaifu2x("none", paths=copy)
