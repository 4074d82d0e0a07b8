"""StyleGAN 2 in TensorFlow 2, built from an NVIDIA TF1 pickle (configs e/f, skip generator) or,
through stylegan2_pytorch.py, from a stylegan2-ada-pytorch / stylegan3-repo snapshot.

Maths as in NVIDIA's networks_stylegan2.py: stored weights carry no equalised-lr scale,
so each is scaled once here at load time (`w / sqrt(fan_in)`, times lrmul in the mapping).
The modulated convolutions run "fused" like NVIDIA's default: for each image the style
and the demodulation factor scale the 3×3 kernel, which is far smaller than the
activations it would otherwise take two passes over. They run one image at a time
(see layers.per_image), so the batch size never changes an image's bits.

What the PyTorch generators add is optional here and absent from TF1 pickles: activation
clamping (`conv_clamp`), the `orig` and `resnet` architectures besides `skip`, and a class
label (c) embedded into the mapping input.
"""

from __future__ import annotations

import math

import numpy as np

from bakery.images.generator import Generator, KwargChecker, expect_shape, log2_resolution
from bakery.images.layers import (SQRT2, conv1x1, conv3x3, dense, fir_kernel, lrelu, normalize_2nd_moment,
                                  per_image, rsqrt_exact, tf, transposed_to_phases, upsample_by_phases)
from bakery.images.pickle_loader import CheckpointError, Network

# NVIDIA's TF1 defaults (G_main / G_mapping / G_synthesis_stylegan2) for keys a pickle omits.
DEFAULTS = dict(
    latent_size=512, dlatent_size=512, label_size=0, mapping_layers=8, mapping_fmaps=512,
    mapping_lrmul=0.01, mapping_nonlinearity="lrelu", normalize_latents=True,
    num_channels=3, resolution=1024, fmap_base=16 << 10, fmap_decay=1.0, fmap_min=1,
    fmap_max=512, architecture="skip", nonlinearity="lrelu", resample_kernel=[1, 3, 3, 1],
    dtype="float32",
)
# Options that only steer training or TF1 graph building; they do not change the image.
RUNTIME_ONLY = {"truncation_psi", "truncation_cutoff", "truncation_psi_val", "truncation_cutoff_val",
                "dlatent_avg_beta", "style_mixing_prob", "is_training", "is_validation",
                "return_dlatents", "randomize_noise", "fused_modconv", "dlatent_broadcast",
                "is_template_graph", "components", "mapping_func", "synthesis_func"}
REQUIRED_VALUES = {"label_size": 0, "architecture": "skip", "nonlinearity": "lrelu",
                   "mapping_nonlinearity": "lrelu", "dtype": "float32"}


@per_image(batched=3)
def modulated_conv(x, s, d, kernel, up: bool):
    """NVIDIA's fused modconv for one image: the style s [1, in] and the demodulation d [1, out]
    scale the small kernel, not the large activations. An upsampling kernel is in sub-pixel
    form, its outputs 4 phase groups of `out` channels, so d repeats 4 times."""
    k = kernel * s[0][:, None] * tf.tile(d[0], [4 if up else 1])
    return upsample_by_phases(x, k) if up else conv3x3(x, k)


class StyleGAN2(Generator):
    kind = "StyleGAN 2"
    architecture = "skip"  # or "orig" / "resnet" (PyTorch snapshots only)
    embed = None  # (weight, bias) of the class-label embedding when c_dim > 0
    resnet_skips: list = []  # per block from 8 px: the 1×1 up-convolution of a resnet generator

    def __init__(self, gs: Network, source: str):
        kw = KwargChecker(gs, DEFAULTS, RUNTIME_ONLY, REQUIRED_VALUES, source).values
        self.source = source
        self.z_dim, self.w_dim = int(kw["latent_size"]), int(kw["dlatent_size"])
        self.resolution = int(kw["resolution"])
        self.res_log2 = log2_resolution(self.resolution, source)
        self.num_ws = 2 * self.res_log2 - 2
        self.default_cutoff = self.num_ws  # G_main: truncation_cutoff=None means every layer
        self.channels = int(kw["num_channels"])
        self._set_resample_filter(kw["resample_kernel"])
        nf = lambda stage: int(np.clip(int(kw["fmap_base"] / (2.0 ** (stage * kw["fmap_decay"]))),
                                       kw["fmap_min"], kw["fmap_max"]))
        comps = gs.components
        if set(comps) != {"synthesis", "mapping"}:
            raise CheckpointError(f"{source}: Gs must have 'synthesis' and 'mapping' components, "
                                  f"has {sorted(comps)}")
        top = gs.variables
        expect_shape(top, "dlatent_avg", (self.w_dim,), source)
        self.dlatent_avg = tf.constant(top["dlatent_avg"])
        self._build_mapping(comps["mapping"].variables, kw, source)
        self._build_synthesis(comps["synthesis"].variables, nf, source)

    def _set_resample_filter(self, taps) -> None:
        self.fir = fir_kernel(taps, gain=4.0)  # ×factor² for 2× upsampling
        if self.fir.shape != (4, 4):
            raise CheckpointError(f"{self.source}: resample filter {np.shape(taps)}: only 4-tap filters are supported")
        self.rgb_up = tf.constant(self.upsample_mix_kernel(np.eye(self.channels, dtype=np.float32)))

    def upsample_mix_kernel(self, mix: np.ndarray) -> np.ndarray:
        """Sub-pixel kernel of `upsample (zero-insert, pad 2/1, FIR ×4), then the 1×1 channel mix
        mix [in, out]`: both linear and the FIR acts per channel, so they fold into one kernel."""
        kernel_t = self.fir[::-1, ::-1, None, None] * np.asarray(mix, np.float64).T[None, None]
        return transposed_to_phases(kernel_t, offset=1)

    # -- mapping: z → w -------------------------------------------------------------------
    def _build_mapping(self, v: dict, kw: dict, source: str) -> None:
        self.normalize_latents = bool(kw["normalize_latents"])
        lrmul = float(kw["mapping_lrmul"])
        n_layers, fmaps = int(kw["mapping_layers"]), int(kw["mapping_fmaps"])
        self.mapping_layers = []
        fan_in = self.z_dim
        for i in range(n_layers):
            out = self.w_dim if i == n_layers - 1 else fmaps
            w = expect_shape(v, f"Dense{i}/weight", (fan_in, out), f"{source}: mapping")
            b = expect_shape(v, f"Dense{i}/bias", (out,), f"{source}: mapping")
            self.mapping_layers.append((tf.constant(w * (lrmul / math.sqrt(fan_in))), tf.constant(b * lrmul)))
            fan_in = out
        unused = set(v) - {f"Dense{i}/{p}" for i in range(n_layers) for p in ("weight", "bias")}
        if unused:
            raise CheckpointError(f"{source}: mapping has variables this generator does not know: "
                                  f"{sorted(unused)[:3]} (labels or a different mapping network?)")

    def mapping(self, z, c=None):
        """z [N, z_dim] (and the one-hot class c [N, c_dim] of a conditional model) → w [N, w_dim]."""
        x = normalize_2nd_moment(z) if self.normalize_latents else z
        if self.embed is not None:  # NVIDIA: concat(normalize(z), normalize(embed(c)))
            y = normalize_2nd_moment(dense(c, *self.embed))
            x = tf.concat([x, y], axis=1) if self.z_dim > 0 else y
        for w, b in self.mapping_layers:
            x = lrelu(dense(x, w, b), SQRT2)
        return x

    # -- synthesis: ws, noise → image --------------------------------------------------------
    def _build_synthesis(self, v: dict, nf, source: str) -> None:
        src = f"{source}: synthesis"
        self.noise_shapes, self.const_noise = [], []
        for k in range(self.num_ws - 1):
            r = 2 ** ((k + 5) // 2)
            self.const_noise.append(expect_shape(v, f"noise{k}", (1, 1, r, r), src)[0, 0])
            self.noise_shapes.append((r, r))
        self.const_input = tf.constant(expect_shape(v, "4x4/Const/const", (1, nf(1), 4, 4), src)
                                       .transpose(0, 2, 3, 1))
        self.layers = [self._modconv(v, "4x4/Conv", nf(1), nf(1), src)]
        self.torgbs = [self._torgb(v, "4x4/ToRGB", nf(1), src)]
        for res in range(3, self.res_log2 + 1):
            name = f"{2 ** res}x{2 ** res}"
            self.layers.append(self._modconv(v, f"{name}/Conv0_up", nf(res - 2), nf(res - 1), src))
            self.layers.append(self._modconv(v, f"{name}/Conv1", nf(res - 1), nf(res - 1), src))
            self.torgbs.append(self._torgb(v, f"{name}/ToRGB", nf(res - 1), src))

    def _style(self, v, scope, cin, src):
        a = expect_shape(v, f"{scope}/mod_weight", (self.w_dim, cin), src) / math.sqrt(self.w_dim)
        b = expect_shape(v, f"{scope}/mod_bias", (cin,), src) + 1.0  # the "+1" is not stored
        return tf.constant(a.astype(np.float32)), tf.constant(b.astype(np.float32))

    def _modconv(self, v, scope, cin, cout, src) -> dict:
        weight = expect_shape(v, f"{scope}/weight", (3, 3, cin, cout), src) / math.sqrt(9 * cin)
        return self.modconv_layer(self._style(v, scope, cin, src), weight,
                                  float(np.asarray(expect_shape(v, f"{scope}/noise_strength", (), src))),
                                  expect_shape(v, f"{scope}/bias", (cout,), src), up=scope.endswith("Conv0_up"))

    def modconv_layer(self, style, weight: np.ndarray, strength: float, bias: np.ndarray, up: bool,
                      clamp: float | None = None, gain: float = SQRT2) -> dict:
        """One modulated 3×3 conv layer: weight [3, 3, in, out] as TF1 lays it out, already scaled;
        then noise·strength, bias, lrelu·gain and (PyTorch's conv_clamp) a clamp to ±clamp."""
        return dict(
            style=style,
            weight=tf.constant(weight.astype(np.float32)),
            # Σ_{kh,kw} w² per (in, out): demodulation factor = rsqrt(s² @ this)
            wsq=tf.constant(np.square(weight.astype(np.float64)).sum(axis=(0, 1)).astype(np.float32)),
            weight_up=tf.constant(self._upsample_conv_kernel(weight)) if up else None,
            strength=strength, bias=tf.constant(np.asarray(bias, np.float32)), up=up, clamp=clamp, gain=gain,
        )

    def _torgb(self, v, scope, cin, src) -> dict:
        weight = expect_shape(v, f"{scope}/weight", (1, 1, cin, self.channels), src) / math.sqrt(cin)
        return self.torgb_layer(self._style(v, scope, cin, src), weight[0, 0],
                                expect_shape(v, f"{scope}/bias", (self.channels,), src))

    @staticmethod
    def torgb_layer(style, weight: np.ndarray, bias: np.ndarray, clamp: float | None = None) -> dict:
        """Modulated 1×1 conv without demodulation, weight [in, out] already scaled, + bias, clamp."""
        return dict(style=style, weight=tf.constant(np.asarray(weight, np.float32)),
                    bias=tf.constant(np.asarray(bias, np.float32)), clamp=clamp)

    def _upsample_conv_kernel(self, weight: np.ndarray) -> np.ndarray:
        """TF1's upsample_conv_2d is a stride-2 transposed conv with the stored 3×3 kernel flipped
        (K[::-1, ::-1], as [3, 3, out, in]) giving 2H+1, then the 4×4 FIR blur with one pixel of
        padding giving 2H. Both are linear, so they compose into one stride-2 transposed conv
        with a 6×6 kernel, h[k+3−m, l+3−n] += f[k, l]·g[m, n], whose SAME output is exactly that
        2H window; run as one 3×3 conv over the input plus depth_to_space (no zeros multiplied,
        no (2H+1)² intermediate)."""
        f = weight[::-1, ::-1].transpose(0, 1, 3, 2).astype(np.float64)
        g = self.fir.astype(np.float64)
        if g.shape != (4, 4):
            raise CheckpointError(f"{self.source}: resample_kernel must have 4 taps, got {g.shape[0]}")
        h = np.zeros((6, 6) + f.shape[2:])
        for m in range(4):
            for n in range(4):
                h[3 - m:6 - m, 3 - n:6 - n] += f * g[m, n]
        return transposed_to_phases(h, offset=2)  # SAME crops 2 of the 2H + 4 outputs in front

    def _layer(self, x, w_row, noise, layer):
        a, b = layer["style"]
        s = dense(w_row, a, b)  # [N, in]
        d = rsqrt_exact(dense(tf.square(s), layer["wsq"]) + 1e-8)  # [N, out]
        kernel = layer["weight_up"] if layer["up"] else layer["weight"]
        x = modulated_conv(x, s, d, kernel, layer["up"])
        x = x + noise * layer["strength"]
        return _clamp(lrelu(x + layer["bias"], layer["gain"]), layer["clamp"])

    def _to_rgb(self, x, w_row, layer):
        a, b = layer["style"]
        s = dense(w_row, a, b)
        y = conv1x1(x * s[:, None, None, :], layer["weight"])
        return _clamp(y + layer["bias"], layer["clamp"])

    def _upsample_image(self, y):
        """TF1's upsample_2d (zero-insert, pad 2/1, 4×4 FIR ×4) as one stride-2 transposed conv:
        out[q] = Σ_i y[i]·g[2i − q + 2] is conv2d_transpose with the kernel g flipped, SAME,
        computed in its sub-pixel form."""
        return upsample_by_phases(y, self.rgb_up)

    def synthesis(self, ws, noise):
        """ws [N, num_ws, w_dim]; noise: per noise input a [N, r, r, 1] tensor → NHWC float image."""
        n = tf.shape(ws)[0]
        x = tf.tile(self.const_input, [n, 1, 1, 1])
        x = self._layer(x, ws[:, 0], noise[0], self.layers[0])
        y = self._to_rgb(x, ws[:, 1], self.torgbs[0]) if self.torgbs[0] is not None else None
        for i in range(1, self.res_log2 - 1):
            k = 2 * i - 1  # index of this block's Conv0_up among layers, W rows and noise inputs
            skip = upsample_by_phases(x, self.resnet_skips[i - 1]) if self.architecture == "resnet" else None
            x = self._layer(x, ws[:, k], noise[k], self.layers[k])
            x = self._layer(x, ws[:, k + 1], noise[k + 1], self.layers[k + 1])
            x = x if skip is None else skip + x
            if self.torgbs[i] is not None:  # every block in 'skip'; only the last in 'orig'/'resnet'
                rgb = self._to_rgb(x, ws[:, k + 2], self.torgbs[i])
                y = rgb if y is None else self._upsample_image(y) + rgb
        return y

    def flops_per_image(self) -> float:
        """Multiply-adds ×2 of the convolutions (the bulk of the work), for the benchmark."""
        total, res = 0.0, 4
        for layer in self.layers:
            kh, kw, cin, cout = layer["weight"].shape
            total += 2.0 * kh * kw * cin * cout * res * res  # a 3×3 conv per input pixel (NVIDIA's count)
            res = res * 2 if layer["up"] else res
        for i, layer in enumerate(self.torgbs):
            if layer is None:
                continue
            cin, cout = layer["weight"].shape
            total += 2.0 * cin * cout * (4 << i) ** 2
        return total


def _clamp(x, limit: float | None):
    """PyTorch's conv_clamp: clip activations to ±limit (None: no clamp, as in TF1 pickles)."""
    return x if limit is None else tf.clip_by_value(x, -limit, limit)
