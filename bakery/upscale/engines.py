"""Choosing a waifu2x engine: the factory that builds one, and whether it would run on a GPU.

Apart from bakery/upscale/waifu2x.py (what every engine shares), so that the engines import
the shared base and this module imports the engines, never the other way round. Each engine's
library (ncnn, TensorFlow) is imported only when that engine is built or asked about.
"""

from __future__ import annotations

from bakery.errors import BakeryError
from bakery.upscale.config import DEFAULT_ENGINE, ENGINES
from bakery.upscale.waifu2x import Waifu2x


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise BakeryError(f"unknown waifu2x engine {engine!r} (use {' or '.join(ENGINES)})")
    return engine


def make_waifu2x(engine: str = DEFAULT_ENGINE, noise: str = "none", *, tile_size: int = 512,
                 batch_size: int = 1, threads: int = 0, gpu: bool = True) -> Waifu2x:
    """The waifu2x model for `noise` on `engine` ("ncnn" or "tensorflow").

    threads: CPU threads (0 = every core the process may use); gpu: use a GPU when the engine
    finds one (ncnn: a Vulkan device, TensorFlow: a CUDA device).
    """
    if check_engine(engine) == "ncnn":
        from bakery.upscale.ncnn_engine import NcnnWaifu2x

        return NcnnWaifu2x(noise, tile_size=tile_size, batch_size=batch_size, threads=threads, gpu=gpu)
    from bakery.upscale.tf_engine import TensorflowWaifu2x

    return TensorflowWaifu2x(noise, tile_size=tile_size, batch_size=batch_size, threads=threads, gpu=gpu)


def make_from_config(cfg, threads: int) -> Waifu2x:
    """make_waifu2x from an UpscaleConfig, with the thread count the stage planned per worker."""
    return make_waifu2x(cfg.engine, cfg.noise, tile_size=cfg.tile_size, batch_size=cfg.batch_size,
                        threads=threads, gpu=cfg.gpu)


def gpu_available(engine: str = DEFAULT_ENGINE, gpu: bool = True) -> bool:
    """Whether `engine` would run on a GPU here (False at once when gpu is off)."""
    if not gpu:
        return False
    if check_engine(engine) == "ncnn":
        from bakery.upscale.ncnn_engine import vulkan_gpu_count

        return vulkan_gpu_count() > 0
    from bakery.upscale.tf_engine import cuda_gpu_available

    return cuda_gpu_available()
