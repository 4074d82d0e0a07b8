"""The [upscale] and [jpeg] sections."""

from __future__ import annotations

from dataclasses import dataclass

from bakery.config import Table

METHODS = ("waifu2x", "lanczos", "none")
NOISE_LEVELS = ("none", "0", "1", "2", "3")


@dataclass(frozen=True)
class UpscaleConfig:
    method: str
    noise: str  # "none" or "0".."3": waifu2x's denoise level
    scale: int
    tile_size: int
    workers: int


@dataclass(frozen=True)
class JpegConfig:
    quality: int
    progressive: bool
    optimize: bool
    subsampling: str


def parse_upscale(t: Table) -> UpscaleConfig:
    noise_value = t.raw("noise", "none")
    if isinstance(noise_value, int) and not isinstance(noise_value, bool):
        noise_value = str(noise_value)
    if not isinstance(noise_value, str) or noise_value not in NOISE_LEVELS:
        raise t.error("noise", f"must be \"none\" or 0, 1, 2, 3, got {noise_value!r}")
    cfg = UpscaleConfig(
        method=t.str("method", "waifu2x", choices=METHODS),
        noise=noise_value,
        scale=t.int("scale", 2, min=2, max=2),
        tile_size=t.int("tile_size", 256, min=32, max=4096),
        workers=t.int("workers", 2, min=1, max=256),
    )
    t.finish()
    return cfg


def parse_jpeg(t: Table) -> JpegConfig:
    cfg = JpegConfig(
        quality=t.int("quality", 25, min=1, max=95),
        progressive=t.bool("progressive", True),
        optimize=t.bool("optimize", True),
        subsampling=t.str("subsampling", "4:2:0", choices=("4:4:4", "4:2:2", "4:2:0")),
    )
    t.finish()
    return cfg
