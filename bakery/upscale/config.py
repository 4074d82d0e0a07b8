"""The [upscale] and [jpeg] sections (documented key by key in docs/upscale.md)."""

from __future__ import annotations

from dataclasses import dataclass

from bakery.tables import Table

METHODS = ("waifu2x", "lanczos", "none")
ENGINES = ("ncnn", "tensorflow")  # waifu2x engines (bakery.upscale.engines builds them)
DEFAULT_ENGINE = "ncnn"
NOISE_LEVELS = ("none", "0", "1", "2", "3")
SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0")


@dataclass(frozen=True)
class UpscaleConfig:
    method: str  # "waifu2x", "lanczos" or "none"
    engine: str  # waifu2x engine: "ncnn" (default) or "tensorflow"
    gpu: bool  # let the engine use a GPU it finds (ncnn: Vulkan, TensorFlow: CUDA)
    noise: str  # "none" or "0".."3": waifu2x's denoise level
    tile_size: int  # waifu2x input tile edge in pixels (each tile gets 7 px of real context)
    batch_size: int  # tiles per forward pass (matters on a GPU)
    workers: int  # worker processes on CPU; 0 = auto (one)
    threads: int  # engine threads per worker; 0 = cores / workers

    @property
    def scale(self) -> int:
        return 1 if self.method == "none" else 2

    def settings(self) -> dict:
        """What the output pixels depend on; a change redoes every image.

        The engine is part of it: ncnn and TensorFlow agree to within one level on a few pixels,
        not bit for bit, so switching engines redoes the images rather than mixing the two."""
        if self.method == "waifu2x":
            return {"method": self.method, "engine": self.engine, "noise": self.noise, "scale": 2}
        return {"method": self.method, "scale": self.scale}


@dataclass(frozen=True)
class JpegConfig:
    quality: int
    progressive: bool
    optimize: bool
    subsampling: str
    workers: int  # encoder threads; 0 = one per core

    def settings(self) -> dict:
        return {"quality": self.quality, "progressive": self.progressive,
                "optimize": self.optimize, "subsampling": self.subsampling}


def parse_upscale(t: Table) -> UpscaleConfig:
    noise_value = t.raw("noise", "none")
    if isinstance(noise_value, int) and not isinstance(noise_value, bool):
        noise_value = str(noise_value)
    if not isinstance(noise_value, str) or noise_value not in NOISE_LEVELS:
        raise t.error("noise", f"must be \"none\" or 0, 1, 2, 3, got {noise_value!r}")
    cfg = UpscaleConfig(
        method=t.str("method", "waifu2x", choices=METHODS),
        engine=t.str("engine", DEFAULT_ENGINE, choices=ENGINES),
        gpu=t.bool("gpu", True),
        noise=noise_value,
        tile_size=t.int("tile_size", 512, min=16, max=4096),
        batch_size=t.int("batch_size", 4, min=1, max=1024),
        workers=t.int("workers", 0, min=0, max=256),
        threads=t.int("threads", 0, min=0, max=256),
    )
    t.finish()
    return cfg


def parse_jpeg(t: Table) -> JpegConfig:
    cfg = JpegConfig(
        quality=t.int("quality", 25, min=1, max=95),
        progressive=t.bool("progressive", True),
        optimize=t.bool("optimize", True),
        subsampling=t.str("subsampling", "4:2:0", choices=SUBSAMPLINGS),
        workers=t.int("workers", 0, min=0, max=256),
    )
    t.finish()
    return cfg
