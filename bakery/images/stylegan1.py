"""StyleGAN 1 (G_style, final resolution: lod = 0) in TensorFlow 2, from an NVIDIA TF1 pickle.

As in NVIDIA's networks_stylegan.py: mapping with equalised lr (gain √2, lrmul 0.01) and a
plain leaky ReLU; synthesis from a learned 4×4 constant where every layer ends with
noise → bias → lrelu → instance norm → AdaIN style (scale·(s+1) + shift). Upsampling is
nearest-neighbour + 3×3 conv below 128 px and NVIDIA's fused transposed conv from 128 px
up, each followed by the [1, 2, 1] blur. Only the last ToRGB is used (lod = 0).
"""

from __future__ import annotations

import math

import numpy as np

from bakery.images.generator import Generator, KwargChecker, expect_shape, log2_resolution
from bakery.images.layers import (SQRT2, conv1x1, conv3x3, dense, depthwise_fir, fir_kernel, lrelu,
                                  nearest_upscale, normalize_2nd_moment, rsqrt_exact, spatial_mean, tf,
                                  transposed_to_phases, upsample_by_phases)
from bakery.images.pickle_loader import CheckpointError, Network
from bakery.images.safe_pickle import describe

# NVIDIA's TF1 defaults (G_style / G_mapping / G_synthesis in networks_stylegan.py).
DEFAULTS = dict(
    latent_size=512, dlatent_size=512, label_size=0, mapping_layers=8, mapping_fmaps=512,
    mapping_lrmul=0.01, mapping_nonlinearity="lrelu", normalize_latents=True,
    num_channels=3, resolution=1024, fmap_base=8192, fmap_decay=1.0, fmap_max=512,
    use_styles=True, const_input_layer=True, use_noise=True, nonlinearity="lrelu",
    use_wscale=True, use_pixel_norm=False, use_instance_norm=True, dtype="float32",
    fused_scale="auto", blur_filter=[1, 2, 1], structure="auto",
)
RUNTIME_ONLY = {"truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val",
                "dlatent_avg_beta", "style_mixing_prob", "is_training", "is_validation",
                "is_template_graph", "force_clean_graph", "randomize_noise", "dlatent_broadcast",
                "components"}
REQUIRED_VALUES = {"label_size": 0, "mapping_nonlinearity": "lrelu", "nonlinearity": "lrelu",
                   "use_styles": True, "const_input_layer": True, "use_noise": True, "use_wscale": True,
                   "use_pixel_norm": False, "use_instance_norm": True, "dtype": "float32"}
G_STYLE_DEFAULT_CUTOFF = 8  # G_style(truncation_cutoff=8): only the coarse rows are truncated


class StyleGAN1(Generator):
    kind = "StyleGAN 1"

    def __init__(self, gs: Network, source: str):
        kw = KwargChecker(gs, DEFAULTS, RUNTIME_ONLY, REQUIRED_VALUES, source).values
        if kw["structure"] not in ("auto", "linear", "recursive", "fixed"):
            raise CheckpointError(f"{source}: static_kwargs: structure={describe(kw['structure'])} is not supported")
        if kw["fused_scale"] not in ("auto", True, False):
            raise CheckpointError(f"{source}: static_kwargs: fused_scale={describe(kw['fused_scale'])} is not supported")
        self.source = source
        self.z_dim, self.w_dim = int(kw["latent_size"]), int(kw["dlatent_size"])
        self.resolution = int(kw["resolution"])
        self.res_log2 = log2_resolution(self.resolution, source)
        self.num_ws = 2 * self.res_log2 - 2
        self.default_cutoff = min(G_STYLE_DEFAULT_CUTOFF, self.num_ws)
        self.channels = int(kw["num_channels"])
        self.fused_scale = kw["fused_scale"]
        self.blur = fir_kernel(kw["blur_filter"])
        nf = lambda stage: min(int(kw["fmap_base"] / (2.0 ** (stage * kw["fmap_decay"]))), kw["fmap_max"])
        comps = gs.components
        if set(comps) != {"synthesis", "mapping"}:
            raise CheckpointError(f"{source}: Gs must have 'synthesis' and 'mapping' components, "
                                  f"has {sorted(comps)}")
        top = gs.variables
        self.dlatent_avg = tf.constant(expect_shape(top, "dlatent_avg", (self.w_dim,), source))
        self._build_mapping(comps["mapping"].variables, kw, source)
        self._build_synthesis(comps["synthesis"].variables, nf, source)
        for where, v in (("Gs", top), ("synthesis", comps["synthesis"].variables)):
            if float(np.asarray(v.get("lod", 0.0))) != 0.0:
                raise CheckpointError(f"{source}: {where}/lod = {float(v['lod'])}: a snapshot taken during "
                                      "progressive growing (lod ≠ 0) is not supported")

    # -- mapping ---------------------------------------------------------------------------
    def _build_mapping(self, v: dict, kw: dict, source: str) -> None:
        self.normalize_latents = bool(kw["normalize_latents"])
        lrmul = float(kw["mapping_lrmul"])
        n_layers, fmaps = int(kw["mapping_layers"]), int(kw["mapping_fmaps"])
        self.mapping_layers, fan_in = [], self.z_dim
        for i in range(n_layers):
            out = self.w_dim if i == n_layers - 1 else fmaps
            w = expect_shape(v, f"Dense{i}/weight", (fan_in, out), f"{source}: mapping")
            b = expect_shape(v, f"Dense{i}/bias", (out,), f"{source}: mapping")
            self.mapping_layers.append((tf.constant(w * (SQRT2 / math.sqrt(fan_in) * lrmul)),
                                        tf.constant(b * lrmul)))
            fan_in = out

    def mapping(self, z):
        x = normalize_2nd_moment(z) if self.normalize_latents else z
        for w, b in self.mapping_layers:
            x = lrelu(dense(x, w, b))  # StyleGAN 1: no √2 gain after the activation
        return x

    # -- synthesis -------------------------------------------------------------------------
    def _build_synthesis(self, v: dict, nf, source: str) -> None:
        src = f"{source}: synthesis"
        self.noise_shapes = [(2 ** (i // 2 + 2),) * 2 for i in range(self.num_ws)]
        self.const_noise = [expect_shape(v, f"noise{i}", (1, 1) + s, src)[0, 0]
                            for i, s in enumerate(self.noise_shapes)]
        c = nf(1)
        self.const_input = tf.constant(expect_shape(v, "4x4/Const/const", (1, c, 4, 4), src).transpose(0, 2, 3, 1))
        self.epilogues = [self._epilogue(v, "4x4/Const", c, src)]
        self.convs = [self._conv(v, "4x4/Conv", c, c, src, up=False)]
        self.epilogues.append(self._epilogue(v, "4x4/Conv", c, src))
        for res in range(3, self.res_log2 + 1):
            name = f"{2 ** res}x{2 ** res}"
            self.convs.append(self._conv(v, f"{name}/Conv0_up", nf(res - 2), nf(res - 1), src, up=True))
            self.epilogues.append(self._epilogue(v, f"{name}/Conv0_up", nf(res - 1), src))
            self.convs.append(self._conv(v, f"{name}/Conv1", nf(res - 1), nf(res - 1), src, up=False))
            self.epilogues.append(self._epilogue(v, f"{name}/Conv1", nf(res - 1), src))
        c = nf(self.res_log2 - 1)
        w = expect_shape(v, "ToRGB_lod0/weight", (1, 1, c, self.channels), src)[0, 0] / math.sqrt(c)
        self.torgb = (tf.constant(w.astype(np.float32)),
                      tf.constant(expect_shape(v, "ToRGB_lod0/bias", (self.channels,), src)))

    def _conv(self, v, scope, cin, cout, src, up: bool) -> dict:
        w = expect_shape(v, f"{scope}/weight", (3, 3, cin, cout), src) * (SQRT2 / math.sqrt(9 * cin))
        w = w.astype(np.float32)
        layer = dict(weight=tf.constant(w), up=up, fused=False)
        if up:
            in_res = int(scope.split("x")[0]) // 2
            fused = self.fused_scale if self.fused_scale != "auto" else 2 * in_res >= 128
            if fused:  # NVIDIA's fused upscale2d_conv2d: 4×4 kernel for a stride-2 transposed conv
                wt = np.pad(w.transpose(0, 1, 3, 2), [[1, 1], [1, 1], [0, 0], [0, 0]])
                wt = wt[1:, 1:] + wt[:-1, 1:] + wt[1:, :-1] + wt[:-1, :-1]
                # conv2d_transpose(stride 2, SAME) crops 1 in front; run in its sub-pixel form
                layer.update(fused=True, weight_up=tf.constant(transposed_to_phases(wt, offset=1)))
        return layer

    def _epilogue(self, v, scope, c, src) -> dict:
        style_w = expect_shape(v, f"{scope}/StyleMod/weight", (self.w_dim, 2 * c), src) / math.sqrt(self.w_dim)
        return dict(
            noise_weight=tf.constant(expect_shape(v, f"{scope}/Noise/weight", (c,), src)),
            bias=tf.constant(expect_shape(v, f"{scope}/bias", (c,), src)),
            style_w=tf.constant(style_w.astype(np.float32)),
            style_b=tf.constant(expect_shape(v, f"{scope}/StyleMod/bias", (2 * c,), src)),
        )

    def _apply_epilogue(self, x, w_row, noise, ep):
        x = x + noise * ep["noise_weight"]
        x = lrelu(x + ep["bias"])
        x = x - spatial_mean(x)  # instance norm
        x = x * rsqrt_exact(spatial_mean(tf.square(x)) + 1e-8)
        style = dense(w_row, ep["style_w"], ep["style_b"])
        scale, shift = tf.split(style, 2, axis=1)
        return x * (scale[:, None, None, :] + 1.0) + shift[:, None, None, :]

    def _conv_up(self, x, layer):
        if layer["fused"]:
            x = upsample_by_phases(x, layer["weight_up"])
        else:
            x = conv3x3(nearest_upscale(x), layer["weight"])
        k = self.blur.shape[0]
        return depthwise_fir(x, self.blur, (k - 1) // 2, k // 2)  # SAME padding

    def synthesis(self, ws, noise):
        """ws [N, num_ws, w_dim]; noise: per layer a [N, r, r, 1] tensor → NHWC float image."""
        x = tf.tile(self.const_input, [tf.shape(ws)[0], 1, 1, 1])
        x = self._apply_epilogue(x, ws[:, 0], noise[0], self.epilogues[0])
        for i, layer in enumerate(self.convs, start=1):
            x = self._conv_up(x, layer) if layer["up"] else conv3x3(x, layer["weight"])
            x = self._apply_epilogue(x, ws[:, i], noise[i], self.epilogues[i])
        w, b = self.torgb
        return conv1x1(x, w) + b

    def flops_per_image(self) -> float:
        total, res = 0.0, 4
        for layer in self.convs:
            _, _, cin, cout = layer["weight"].shape
            res = res * 2 if layer["up"] else res
            total += 2.0 * 9 * cin * cout * res * res
        cin, cout = self.torgb[0].shape
        return total + 2.0 * cin * cout * res * res
