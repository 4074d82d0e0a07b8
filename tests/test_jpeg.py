"""JPEG encoding: quality, progressive, 4:2:0, no metadata, sRGB conversion, alpha, atomic writes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms, JpegImagePlugin

from bakery.upscale.config import JpegConfig
from bakery.upscale.jpeg import encode_jpeg, to_srgb, write_jpeg

DEFAULT = JpegConfig(quality=25, progressive=True, optimize=True, subsampling="4:2:0", workers=0)


def picture(width: int = 64, height: int = 48) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.dstack([x * 4 % 256, y * 5 % 256, (x + y) * 3 % 256]).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_defaults_quality_25_progressive_420():
    img = picture()
    ours = decode(encode_jpeg(img, DEFAULT))
    assert ours.format == "JPEG" and ours.mode == "RGB" and ours.size == img.size
    assert ours.info.get("progressive") and ours.info.get("progression")
    assert JpegImagePlugin.get_sampling(ours) == 2  # 4:2:0
    plain = io.BytesIO()
    img.save(plain, "JPEG", quality=25)
    assert ours.quantization == decode(plain.getvalue()).quantization  # the quality-25 tables


def test_options_are_honoured():
    cfg = JpegConfig(quality=90, progressive=False, optimize=False, subsampling="4:4:4", workers=1)
    out = decode(encode_jpeg(picture(), cfg))
    assert not out.info.get("progressive")
    assert JpegImagePlugin.get_sampling(out) == 0
    assert len(encode_jpeg(picture(), cfg)) > len(encode_jpeg(picture(), DEFAULT))


def test_metadata_is_stripped():
    img = picture()
    exif = Image.Exif()
    exif[0x010E] = "secret description"
    img.info["comment"] = b"a comment"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    img.info["icc_profile"] = srgb
    img.info["exif"] = exif.tobytes()
    data = encode_jpeg(img, DEFAULT)
    out = decode(data)
    for key in ("exif", "icc_profile", "comment", "xmp"):
        assert key not in out.info
    for marker in (b"Exif", b"ICC_PROFILE", b"secret", b"a comment"):
        assert marker not in data


def test_embedded_profile_is_converted_to_srgb():
    rgb = picture()
    lab = ImageCms.profileToProfile(rgb, ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"),
                                    outputMode="LAB")
    lab.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    error = np.abs(np.asarray(to_srgb(lab)).astype(int) - np.asarray(rgb).astype(int))
    assert error.mean() < 1.5 and np.percentile(error, 90) <= 3  # 8-bit Lab round trip is lossy
    # without the profile the LAB numbers would be taken as RGB: clearly different
    plain = lab.copy()
    plain.info.pop("icc_profile")
    assert np.abs(np.asarray(to_srgb(plain)).astype(int) - np.asarray(rgb).astype(int)).max() > 20


def test_broken_profile_is_reported_and_ignored(caplog):
    img = picture()
    img.info["icc_profile"] = b"not a profile at all"
    with caplog.at_level("WARNING", logger="bakery.compress"):
        out = to_srgb(img, "example-7.png")
    assert "example-7.png: embedded ICC profile unusable" in caplog.text
    assert (np.asarray(out) == np.asarray(img)).all()


@pytest.mark.parametrize("mode", ["L", "P", "LA", "RGBA", "CMYK", "I;16", "1"])
def test_any_mode_encodes(mode):
    base = picture()
    if mode == "I;16":
        img = Image.fromarray(np.asarray(base.convert("L")).astype("<u2") * 257)
    else:
        img = base.convert(mode)
    out = decode(encode_jpeg(img, DEFAULT))
    assert out.mode == "RGB" and out.size == base.size


def test_transparent_pixels_become_white():
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 255  # red, but fully transparent on the left half
    rgba[:, 8:, 3] = 255
    out = np.asarray(to_srgb(Image.fromarray(rgba, "RGBA")))
    assert (out[:, :8] == 255).all()
    assert (out[:, 8:] == [255, 0, 0]).all()


def test_write_is_atomic_and_reports_size(tmp_path):
    path = tmp_path / "public" / "example-3.jpg"
    size = write_jpeg(picture(), path, DEFAULT)
    assert path.stat().st_size == size > 0
    assert [p.name for p in path.parent.iterdir()] == ["example-3.jpg"]
    assert decode(path.read_bytes()).size == (64, 48)
