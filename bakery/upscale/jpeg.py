"""Pillow JPEG encoding for the site: sRGB, no metadata, quality/progressive/optimize/subsampling from [jpeg]."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from PIL import Image, ImageCms

from bakery.fsutil import write_bytes_atomic
from bakery.upscale.config import JpegConfig
from bakery.upscale.modes import ALPHA_MODES, WIDE_GREY_MODES, split_modes

log = logging.getLogger("bakery.compress")
CMS_MODES = ("RGB", "RGBA", "L", "CMYK", "LAB")  # modes lcms transforms directly
BACKGROUND = (255, 255, 255)  # JPEG has no alpha: transparent areas are laid over white
_SRGB = None


def srgb_profile() -> ImageCms.ImageCmsProfile:
    global _SRGB  # built once: creating an lcms profile is not free and it never changes
    if _SRGB is None:
        _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return _SRGB


def _straight_modes(img: Image.Image) -> Image.Image:
    """Palette, 16-bit and exotic modes → L, RGB, RGBA or CMYK, which lcms and the flattening handle."""
    if img.mode in ("L", "RGB", "RGBA", "CMYK"):
        return img
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        return img.convert("RGBA")
    if img.mode in WIDE_GREY_MODES:
        return Image.fromarray(split_modes(img)[0], "RGB")  # 16-bit grey scaled to 8 bits
    return img.convert("RGB")


def to_srgb(img: Image.Image, name: str = "image") -> Image.Image:
    """Any Pillow image → an 8-bit sRGB RGB image with no metadata (alpha laid over white).

    An embedded ICC profile is honoured by converting to sRGB; an unusable profile is
    reported and the pixels are taken as sRGB.
    """
    icc = img.info.get("icc_profile")
    if icc:
        base = img if img.mode in CMS_MODES else _straight_modes(img)
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out_mode = "RGBA" if base.mode == "RGBA" else "RGB"
            img = ImageCms.profileToProfile(base, source, srgb_profile(), outputMode=out_mode)
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            log.warning("%s: embedded ICC profile unusable (%s); assuming sRGB", name, exc)
            img = base
    img = _straight_modes(img)
    if img.mode == "RGBA":
        flat = Image.new("RGB", img.size, BACKGROUND)
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    elif img.mode != "RGB":
        img = img.convert("RGB")
    else:
        img = img.copy()
    img.info = {}  # Pillow copies some info (comments, XMP) into the file unless it is empty
    return img


def encode_jpeg(img: Image.Image, cfg: JpegConfig, name: str = "image") -> bytes:
    buffer = io.BytesIO()
    to_srgb(img, name).save(buffer, "JPEG", quality=cfg.quality, progressive=cfg.progressive,
                            optimize=cfg.optimize, subsampling=cfg.subsampling)
    return buffer.getvalue()


def write_jpeg(img: Image.Image, path: Path, cfg: JpegConfig) -> int:
    """Encode and write atomically; returns the file size in bytes."""
    data = encode_jpeg(img, cfg, Path(path).name)
    write_bytes_atomic(path, data)
    return len(data)
