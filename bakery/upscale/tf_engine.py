"""waifu2x upconv_7 as a TensorFlow 2 graph (float32, NHWC), built from the parsed ncnn weights.

The alternative engine (`[upscale] engine = "tensorflow"`): it runs where TensorFlow runs,
e.g. on a CUDA GPU without a Vulkan driver. Pre/post-processing and tiling are the shared
ones in waifu2x.py. TensorFlow is imported lazily, when this engine is built.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from bakery.native_stderr import quiet_native_startup
from bakery.upscale.ncnn_weights import Network
from bakery.upscale.waifu2x import Waifu2x


def tensorflow(threads: int = 0, gpu: bool = True):
    """Import TensorFlow once; the thread count and hiding the GPU only take effect before its
    first op runs."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with quiet_native_startup():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # CUDA probing logs here, once
    import tensorflow as tf

    if threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow is already running in this process; keep its pools
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and not gpu:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            pass  # devices already initialised in this process
    for device in gpus:
        try:
            tf.config.experimental.set_memory_growth(device, True)
        except RuntimeError:
            pass
    # TF32 matmuls on Ampere+ GPUs lose ~3 decimal digits: too coarse for the 1e-4 parity target.
    tf.config.experimental.enable_tensor_float_32_execution(False)
    return tf


def cuda_gpu_available() -> bool:
    return bool(tensorflow().config.list_physical_devices("GPU"))


class TensorflowWaifu2x(Waifu2x):
    engine = "tensorflow"

    def __init__(self, noise: str = "none", tile_size: int = 512, batch_size: int = 1,
                 threads: int = 0, gpu: bool = True, network: Network | None = None):
        super().__init__(noise, tile_size, batch_size, network)
        tf = self.tf = tensorflow(threads, gpu)
        self._layers = []
        for layer in self.network.layers:
            if layer.kind == "Convolution":
                kernel = layer.weight.transpose(2, 3, 1, 0)  # [out,in,kh,kw] → HWIO
            else:
                kernel = layer.weight.transpose(2, 3, 0, 1)  # conv2d_transpose wants [kh,kw,out,in]
            self._layers.append((layer, tf.constant(kernel), tf.constant(layer.bias)))
        # one traced graph per tile shape: equal tiles (see tile_origins) share it
        self._forward = tf.function(self._graph, reduce_retracing=True)

    def _graph(self, x):
        tf = self.tf
        for layer, kernel, bias in self._layers:
            if layer.kind == "Convolution":
                if layer.pad:
                    x = tf.pad(x, [[0, 0], [layer.pad] * 2, [layer.pad] * 2, [0, 0]])
                x = tf.nn.bias_add(tf.nn.conv2d(x, kernel, layer.stride, "VALID"), bias)
            else:
                # ncnn's Deconvolution scatters x[i] into out[s*i + k] with no kernel flip, which
                # is exactly conv2d_transpose; its "pad" crops the full output afterwards.
                shape = tf.shape(x)
                k, s, c = layer.kernel, layer.stride, layer.pad
                full = tf.stack([shape[0], (shape[1] - 1) * s + k, (shape[2] - 1) * s + k, kernel.shape[2]])
                x = tf.nn.conv2d_transpose(x, kernel, full, s, "VALID")
                x = tf.nn.bias_add(x[:, c:full[1] - c, c:full[2] - c, :], bias)
            if layer.leaky_slope is not None:
                x = tf.nn.leaky_relu(x, layer.leaky_slope)
        return x

    def forward(self, batch: np.ndarray) -> np.ndarray:
        return self._forward(self.tf.constant(batch)).numpy()
