"""Pillow images of any mode ↔ the uint8 RGB + optional alpha arrays the upscalers work on."""

from __future__ import annotations

import numpy as np
from PIL import Image

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
WIDE_GREY_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")


def split_modes(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode → (uint8 RGB array, uint8 alpha array or None).

    Palette and grey images become RGB(A), transparency kept; 16-bit and float grey are
    scaled to 8 bits; CMYK/YCbCr/LAB/HSV are converted to RGB.
    """
    mode = img.mode
    has_alpha = mode in ALPHA_MODES or "transparency" in img.info
    if mode in WIDE_GREY_MODES:
        grey = np.asarray(img, dtype=np.float64)
        if mode != "F":
            grey = grey / 257.0  # 16-bit → 8-bit
        img = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8), "L")
        has_alpha = False
    img = img.convert("RGBA" if has_alpha else "RGB")
    array = np.asarray(img)
    if has_alpha:
        return np.ascontiguousarray(array[..., :3]), np.ascontiguousarray(array[..., 3])
    return array, None


def join_modes(rgb: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    if alpha is None:
        return Image.fromarray(rgb, "RGB")
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def lanczos_2x(img: Image.Image) -> Image.Image:
    """The cheap alternative: Pillow's Lanczos on straight RGB(A)."""
    rgb, alpha = split_modes(img)
    base = join_modes(rgb, alpha)
    return base.resize((2 * base.width, 2 * base.height), Image.Resampling.LANCZOS)
