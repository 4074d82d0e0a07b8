"""StyleGAN 1's discriminator (`D_basic`, progressive-GAN style) in TensorFlow 2, from the `D`
of an NVIDIA TF1 (G, D, Gs) pickle, fully grown (lod = 0).

As in NVIDIA's networks_stylegan.py: equalised learning rate (every weight × gain/sqrt(fan_in),
gain √2, the last dense layer 1), bias then a plain leaky ReLU (no gain after it). FromRGB_lod0
(1×1) on the image; per block Conv0 (3×3), then the [1, 2, 1] blur and Conv1_down, a 3×3 conv
and a 2×2 average (fused into one stride-2 4×4 conv from 128 px up, as `fused_scale='auto'`);
at 4×4 the minibatch-stddev channel, Conv, Dense0, Dense1. The other FromRGB_lod* layers are
progressive-growing leftovers that do nothing at lod 0.
"""

from __future__ import annotations

import numpy as np

from bakery.images.d_stylegan2 import tf1_kwargs
from bakery.images.discriminator import Discriminator, check_channels, conv2d, minibatch_stddev, nchw_flatten_rows
from bakery.images.generator import expect_shape, log2_resolution
from bakery.images.layers import dense, depthwise_fir, fir_kernel, lrelu, per_image, tf
from bakery.images.pickle_loader import CheckpointError, Network

SQRT2 = float(np.sqrt(2.0))
# D_basic's defaults (NVlabs/stylegan training/networks_stylegan.py) for keys a pickle omits.
DEFAULTS = dict(num_channels=1, resolution=32, label_size=0, fmap_base=8192, fmap_decay=1.0, fmap_max=512,
                nonlinearity="lrelu", use_wscale=True, mbstd_group_size=4, mbstd_num_features=1,
                dtype="float32", fused_scale="auto", blur_filter=[1, 2, 1], structure="auto")
RUNTIME_ONLY = {"is_template_graph", "components"}
REQUIRED_VALUES = {"label_size": 0, "nonlinearity": "lrelu", "use_wscale": True, "dtype": "float32"}


@per_image
def avg_pool2(x):
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


class DStyleGAN1(Discriminator):
    kind = "StyleGAN 1 discriminator (TF1 D_basic)"

    def __init__(self, d: Network, source: str):
        kw = tf1_kwargs(d, DEFAULTS, RUNTIME_ONLY, REQUIRED_VALUES, source)
        if kw["structure"] not in ("auto", "linear", "recursive", "fixed"):
            raise CheckpointError(f"{source}: D static_kwargs: structure={kw['structure']!r} is not supported")
        if kw["fused_scale"] not in ("auto", True, False):
            raise CheckpointError(f"{source}: D static_kwargs: fused_scale={kw['fused_scale']!r} is not supported")
        src = f"{source}: D"
        self.resolution, self.channels = int(kw["resolution"]), int(kw["num_channels"])
        res_log2 = log2_resolution(self.resolution, src)
        group = int(kw["mbstd_group_size"])
        self.mbstd_group_size = group
        self.mbstd_num_channels = int(kw["mbstd_num_features"]) if group > 1 else 0
        self.blur = fir_kernel(kw["blur_filter"]) if kw["blur_filter"] else None
        nf = lambda stage: min(int(kw["fmap_base"] / (2.0 ** (stage * kw["fmap_decay"]))), kw["fmap_max"])
        v, used = d.variables, set()

        def take(name, shape):
            used.add(name)
            return expect_shape(v, name, shape, src).astype(np.float64)

        if float(take("lod", ())) != 0.0:
            raise CheckpointError(f"{src}: lod = {float(v['lod'])}: a snapshot taken during progressive growing "
                                  "(lod ≠ 0) is not supported")
        self.fromrgb = self._layer(take, "FromRGB_lod0", 1, self.channels, nf(res_log2 - 1))
        for lod in range(1, res_log2 - 1):  # unused at lod 0, but part of the file: shapes checked
            take(f"FromRGB_lod{lod}/weight", (1, 1, self.channels, nf(res_log2 - lod - 1)))
            take(f"FromRGB_lod{lod}/bias", (nf(res_log2 - lod - 1),))
        self.blocks = []
        for res in range(res_log2, 2, -1):
            scope = f"{2 ** res}x{2 ** res}"
            fused = kw["fused_scale"] if kw["fused_scale"] != "auto" else 2 ** res >= 128
            conv1 = self._layer(take, f"{scope}/Conv1_down", 3, nf(res - 1), nf(res - 2))
            if fused:  # NVIDIA's conv2d_downscale2d: 4×4 kernel, the 3×3 one summed over 2×2 shifts / 4
                w = np.pad(conv1["weight"].numpy().astype(np.float64), [[1, 1], [1, 1], [0, 0], [0, 0]])
                w = (w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]) * 0.25
                conv1["weight"] = tf.constant(w.astype(np.float32))
            conv1["fused"] = fused
            self.blocks.append((self._layer(take, f"{scope}/Conv0", 3, nf(res - 1), nf(res - 1)), conv1))
        check_channels(nf(1), self.mbstd_num_channels, src)
        self.conv = self._layer(take, "4x4/Conv", 3, nf(1) + self.mbstd_num_channels, nf(1))
        dense0 = self._layer(take, "4x4/Dense0", None, nf(1) * 16, nf(0))
        dense0["weight"] = tf.constant(nchw_flatten_rows(dense0["weight"].numpy(), nf(1), 4))
        self.dense0 = dense0
        self.dense1 = self._layer(take, "4x4/Dense1", None, nf(0), 1, gain=1.0)
        unused = sorted(set(v) - used)
        if unused:
            raise CheckpointError(f"{src} has variables this discriminator does not know: {', '.join(unused[:3])}")

    @staticmethod
    def _layer(take, scope: str, k: int | None, cin: int, cout: int, gain: float = SQRT2) -> dict:
        """Equalised-lr weight (× gain / sqrt(fan_in)) and bias; k None for a dense layer."""
        shape = (cin, cout) if k is None else (k, k, cin, cout)
        fan_in = cin * (k * k if k else 1)
        w = take(f"{scope}/weight", shape) * (gain / np.sqrt(fan_in))
        return dict(weight=tf.constant(w.astype(np.float32)), bias=tf.constant(take(f"{scope}/bias", (cout,))
                                                                               .astype(np.float32)))

    def _conv_down(self, x, layer):
        if self.blur is not None:
            k = self.blur.shape[0]
            x = depthwise_fir(x, self.blur, (k - 1) // 2, k // 2)
        if layer["fused"]:
            return conv2d(x, layer["weight"], 2, "SAME")
        return avg_pool2(conv2d(x, layer["weight"], 1, "SAME"))

    def forward(self, x, c, groups: int):
        h = lrelu(conv2d(x, self.fromrgb["weight"]) + self.fromrgb["bias"])
        for conv0, conv1 in self.blocks:
            h = lrelu(conv2d(h, conv0["weight"]) + conv0["bias"])
            h = lrelu(self._conv_down(h, conv1) + conv1["bias"])
        if self.mbstd_num_channels:
            h = minibatch_stddev(h, h.shape[0] // groups, self.mbstd_num_channels, groups)
        h = lrelu(conv2d(h, self.conv["weight"]) + self.conv["bias"])
        h = lrelu(dense(tf.reshape(h, [h.shape[0], -1]), self.dense0["weight"], self.dense0["bias"]))
        return dense(h, self.dense1["weight"], self.dense1["bias"])
