"""waifu2x upconv_7 on ncnn (PyPI `ncnn`): the .param/.bin files run by the library they were made for.

The default engine (`[upscale] engine = "ncnn"`). ncnn reads the very files that
ncnn_weights.py parses (it also supplies the tile context and blob names, and checks the files
to the byte first). Pre/post-processing and tiling are the shared ones in waifu2x.py; this
module only turns padded tiles into raw output.

Precision: fp16 and bf16 storage/arithmetic are switched off, so ncnn computes in float32 on
the CPU and on a Vulkan GPU alike, as the parity fixtures were made (fp16 activations would
cost about 0.06 levels of mean error). ncnn still uses its Winograd 3x3 convolutions, which is
where its speed comes from.

GPU: with `gpu` allowed and a Vulkan device reported by ncnn, the network runs there; on a
machine without a Vulkan loader (libvulkan.so.1) or device, ncnn reports no GPU and the CPU is
used, with the probe's "dlopen failed" lines kept off the terminal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bakery.cpus import usable_cpus
from bakery.errors import BakeryError
from bakery.native_stderr import quiet_native_startup
from bakery.upscale.ncnn_weights import load_network, model_paths
from bakery.upscale.waifu2x import Waifu2x

REDUCED_PRECISION = ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic",
                     "use_bf16_storage", "use_bf16_packed")


def ncnn_module():
    try:
        import ncnn
    except ImportError:
        raise BakeryError('the Python package ncnn is not installed (pip install ncnn); it is the default '
                          'waifu2x engine, or set upscale.engine = "tensorflow"') from None
    return ncnn


_gpu_count: int | None = None


def vulkan_gpu_count() -> int:
    """Vulkan devices ncnn can use; probed once per process (without a Vulkan loader, 0)."""
    global _gpu_count
    if _gpu_count is None:
        ncnn = ncnn_module()
        with quiet_native_startup():  # a missing libvulkan.so.1 is reported on fd 2, line by line
            _gpu_count = int(ncnn.get_gpu_count())
    return _gpu_count


def default_threads() -> int:
    return usable_cpus()


class NcnnWaifu2x(Waifu2x):
    engine = "ncnn"

    def __init__(self, noise: str = "none", tile_size: int = 512, batch_size: int = 1,
                 threads: int = 0, gpu: bool = True, paths: tuple[Path, Path] | None = None):
        param, weights = paths or model_paths(noise)
        super().__init__(noise, tile_size, batch_size, load_network(param, weights))
        ncnn = self.ncnn = ncnn_module()
        self.on_gpu = gpu and vulkan_gpu_count() > 0
        net = self.net = ncnn.Net()
        net.opt.use_vulkan_compute = self.on_gpu  # must be set before the model is loaded
        net.opt.num_threads = threads or default_threads()
        for flag in REDUCED_PRECISION:
            if hasattr(net.opt, flag):
                setattr(net.opt, flag, False)
        if net.load_param(str(param)) != 0:
            raise BakeryError(f"{param}: ncnn could not load this .param file")
        if net.load_model(str(weights)) != 0:
            raise BakeryError(f"{weights}: ncnn could not load these weights")
        self.input_blob, self.output_blob = self.network.input_blob, self.network.output_blob

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """ncnn takes one CHW picture per extractor, so the batch is run tile by tile."""
        outputs = []
        for tile in batch:
            chw = np.ascontiguousarray(tile.transpose(2, 0, 1))  # ncnn.Mat borrows this buffer
            mat = self.ncnn.Mat(chw)
            extractor = self.net.create_extractor()
            extractor.input(self.input_blob, mat)
            status, out = extractor.extract(self.output_blob)
            if status != 0:
                raise BakeryError(f"{self.network.name}: ncnn failed on a {tile.shape[1]}x{tile.shape[0]} tile "
                                  f"(status {status})")
            outputs.append(np.array(out, dtype=np.float32).transpose(1, 2, 0))
            del extractor, mat, chw  # the output is copied; the Mat may go before its buffer
        return np.stack(outputs)
