"""StyleGAN 2's discriminator in TensorFlow 2, built from an NVIDIA TF1 pickle's `D`
(`D_stylegan2`) or, through d_stylegan2_pytorch.py, from a stylegan2-ada-pytorch / StyleGAN3
snapshot's `D`.

Maths as in NVIDIA's networks_stylegan2.py: every stored weight is scaled once at load time by
1/sqrt(fan_in); each layer adds its bias, then lrelu · √2 (the output layer is linear). A block
is Conv0 (3×3), Conv1_down (pad 2, [1,3,3,1] FIR, 3×3 stride 2) and, for 'resnet', a 1×1
stride-2 Skip (pad 1, FIR), the two summed with gain √½ each; 'skip' adds a FromRGB of the
FIR-downsampled image at every resolution, 'orig' and 'resnet' only at the first. The 4×4
epilogue appends the minibatch-stddev channel, then Conv, Dense0 and Output. A conditional
PyTorch D projects the output onto the mapped class embedding (`cmap`).
"""

from __future__ import annotations

import math

import numpy as np

from bakery.images.discriminator import (Discriminator, apply_conv, apply_dense, check_channels, conv_layer,
                                         dense_layer, fir_down, minibatch_stddev, nchw_flatten_rows, resample_fir,
                                         weight_gain)
from bakery.images.generator import check_kwarg_type, expect_shape, log2_resolution
from bakery.images.layers import dense, normalize_2nd_moment, tf
from bakery.images.pickle_loader import CheckpointError, Network

ARCHITECTURES = ("orig", "skip", "resnet")
RESNET_GAIN = math.sqrt(0.5)
# D_stylegan2's defaults (NVlabs/stylegan2 training/networks_stylegan2.py) for keys a pickle omits.
DEFAULTS = dict(num_channels=1, resolution=32, label_size=0, fmap_base=16 << 10, fmap_decay=1.0, fmap_min=1,
                fmap_max=512, architecture="resnet", nonlinearity="lrelu", mbstd_group_size=4,
                mbstd_num_features=1, dtype="float32", resample_kernel=[1, 3, 3, 1])
RUNTIME_ONLY = {"is_template_graph", "components"}
REQUIRED_VALUES = {"label_size": 0, "nonlinearity": "lrelu", "dtype": "float32"}


class DStyleGAN2(Discriminator):
    kind = "StyleGAN 2 discriminator"
    architecture = "resnet"
    fir: np.ndarray  # 4×4 down-sampling filter, sum 1
    blocks: list  # from the image resolution down to 8: dict(fromrgb, conv0, conv1, skip)
    epilogue: dict  # fromrgb (skip only), conv, fc, out
    mapping: list | None = None  # conditional: embed, then the mapping's dense layers → cmap
    cmap_dim: int = 0

    def forward(self, x, c, groups: int):
        img, h = x, None
        for block in self.blocks:
            if block["fromrgb"] is not None:
                y = apply_conv(img, block["fromrgb"], self.fir)
                h = y if h is None else h + y
            if self.architecture == "skip":
                img = fir_down(img, self.fir, (self.fir.shape[0] - 2) // 2, 2)
            t = apply_conv(h, block["skip"], self.fir) if block["skip"] is not None else None
            h = apply_conv(apply_conv(h, block["conv0"], self.fir), block["conv1"], self.fir)
            h = h if t is None else t + h
        ep = self.epilogue
        if ep["fromrgb"] is not None:
            h = h + apply_conv(img, ep["fromrgb"], self.fir)
        if self.mbstd_num_channels:
            n = h.shape[0]
            h = minibatch_stddev(h, n // groups, self.mbstd_num_channels, groups)
        h = apply_conv(h, ep["conv"], self.fir)
        h = apply_dense(tf.reshape(h, [h.shape[0], -1]), ep["fc"])
        h = apply_dense(h, ep["out"])
        if self.mapping is None:
            return h
        cmap = self.class_map(c)
        ones = tf.constant(np.full((self.cmap_dim, 1), 1.0, np.float32))
        return dense(h * cmap, ones) * (1.0 / math.sqrt(self.cmap_dim))

    def class_map(self, c):
        """NVIDIA's MappingNetwork(z_dim=0): normalize(embed(c)), then the dense layers."""
        embed, *layers = self.mapping
        y = normalize_2nd_moment(apply_dense(c, embed))
        for layer in layers:
            y = apply_dense(y, layer)
        return y


def from_tf1(d: Network, source: str) -> DStyleGAN2:
    """The `D` of a (G, D, Gs) TF1 pickle built by `D_stylegan2` → DStyleGAN2."""
    kw = tf1_kwargs(d, DEFAULTS, RUNTIME_ONLY, REQUIRED_VALUES, source)
    if kw["architecture"] not in ARCHITECTURES:
        raise CheckpointError(f"{source}: D static_kwargs: architecture={kw['architecture']!r} is not supported "
                              f"(one of {', '.join(ARCHITECTURES)})")
    net = DStyleGAN2()
    net.kind = "StyleGAN 2 discriminator (TF1 D_stylegan2)"
    net.architecture = kw["architecture"]
    net.resolution, net.channels = int(kw["resolution"]), int(kw["num_channels"])
    res_log2 = log2_resolution(net.resolution, f"{source}: D")
    net.fir = resample_fir(kw["resample_kernel"])
    group = int(kw["mbstd_group_size"])
    net.mbstd_group_size = group
    net.mbstd_num_channels = int(kw["mbstd_num_features"]) if group > 1 else 0  # D_stylegan2: no layer if G ≤ 1
    nf = lambda stage: int(np.clip(int(kw["fmap_base"] / (2.0 ** (stage * kw["fmap_decay"]))),
                                   kw["fmap_min"], kw["fmap_max"]))
    v, src, used = d.variables, f"{source}: D", set()

    def take(name, shape):
        used.add(name)
        return expect_shape(v, name, shape, src).astype(np.float64)

    def conv(scope, k, cin, cout, down=False, bias=True, act=True, gain=1.0):
        w = take(f"{scope}/weight", (k, k, cin, cout)) * weight_gain(k * k * cin)
        b = take(f"{scope}/bias", (cout,)) if bias else None
        return conv_layer(w, b, down=down, act=act, gain=gain)

    def fromrgb(scope, res):
        return conv(f"{scope}/FromRGB", 1, net.channels, nf(res - 1))

    resnet = net.architecture == "resnet"
    net.blocks = []
    for res in range(res_log2, 2, -1):
        scope = f"{2 ** res}x{2 ** res}"
        net.blocks.append(dict(
            fromrgb=fromrgb(scope, res) if net.architecture == "skip" or res == res_log2 else None,
            conv0=conv(f"{scope}/Conv0", 3, nf(res - 1), nf(res - 1)),
            conv1=conv(f"{scope}/Conv1_down", 3, nf(res - 1), nf(res - 2), down=True,
                       gain=RESNET_GAIN if resnet else 1.0),
            skip=conv(f"{scope}/Skip", 1, nf(res - 1), nf(res - 2), down=True, bias=False, act=False,
                      gain=RESNET_GAIN) if resnet else None))
    check_channels(nf(1), net.mbstd_num_channels, src)
    fc = take("4x4/Dense0/weight", (nf(1) * 16, nf(0))) * weight_gain(nf(1) * 16)
    net.epilogue = dict(
        fromrgb=fromrgb("4x4", 2) if net.architecture == "skip" else None,
        conv=conv("4x4/Conv", 3, nf(1) + net.mbstd_num_channels, nf(1)),
        fc=dense_layer(nchw_flatten_rows(fc, nf(1), 4), take("4x4/Dense0/bias", (nf(0),)), act=True),
        out=dense_layer(take("Output/weight", (nf(0), 1)) * weight_gain(nf(0)), take("Output/bias", (1,)),
                        act=False))
    unused = sorted(set(v) - used)
    if unused:
        raise CheckpointError(f"{src} has variables this discriminator does not know: {', '.join(unused[:3])}")
    return net


def tf1_kwargs(d: Network, defaults: dict, runtime_only: set, required: dict, source: str) -> dict:
    """D's static_kwargs with the build function's defaults filled in; unknown keys or
    unsupported values are an error naming the key."""
    if d.components:
        raise CheckpointError(f"{source}: D has sub-networks ({', '.join(sorted(d.components))}); "
                              f"{d.build_func_name} has none")
    values = dict(defaults)
    for key, value in d.static_kwargs.items():
        if key in runtime_only:
            continue
        if key not in defaults:
            raise CheckpointError(f"{source}: D static_kwargs: unknown option {key!r}={value!r:.60}; "
                                  "this discriminator cannot promise NVIDIA's scores with it")
        check_kwarg_type(key, value, defaults[key], f"{source}: D static_kwargs")
        values[key] = value
    for key, wanted in required.items():
        if values[key] != wanted:
            raise CheckpointError(f"{source}: D static_kwargs: {key}={values[key]!r} is not supported (only {wanted!r})")
    if not 1 <= int(values["num_channels"]) <= 4:
        raise CheckpointError(f"{source}: D static_kwargs: num_channels={values['num_channels']} is not supported")
    return values
