"""StyleGAN3 (alias-free) generators, -T and -R, in TensorFlow 2, from NVIDIA's PyTorch snapshots.

Follows NVlabs/stylegan3 training/networks_stylegan3.py with its pure-PyTorch reference ops
(`filtered_lrelu._filtered_lrelu_ref`, `upfirdn2d._upfirdn2d_ref`), in float32:

* mapping: as stylegan2-ada-pytorch's (shared with stylegan2_pytorch.py), truncation by the
  Renderer: lerp(w_avg, w, psi) on rows < cutoff, every row when no cutoff is configured;
* input layer (SynthesisInput): Fourier features whose frequencies and phases are rotated and
  translated per image by an affine of W row 0, then by the user transform (gen_images.py's
  inverse `make_transform(translate, rotate)`); out-of-band frequencies faded out;
* every further layer (SynthesisLayer): modulated conv with the layer's own kernel (3 for -T,
  1 for -R, 1 for ToRGB), demodulated except in ToRGB, input gain rsqrt(magnitude_ema); bias;
  upsample by up_factor with up_filter; leaky ReLU ×√2 (linear in ToRGB), clamp ±conv_clamp;
  filter with down_filter and keep every down_factor-th sample. Sizes, factors, padding and
  filters are read from each layer's stored state (the filters as the buffers NVIDIA designed
  with scipy: separable 1-D, or -R's radial 2-D down filters), never recomputed;
* output: × output_scale.

StyleGAN3 has no noise inputs (NVIDIA accepts noise_mode and ignores it), so the bakery's noise
modes all give the same picture here. Each image runs through the synthesis on its own
(layers.per_image), so the batch size never changes an image's bits.
"""

from __future__ import annotations

import math

import numpy as np

from bakery.images.generator import Generator
from bakery.images.layers import SQRT2, dense, per_image, rsqrt_exact, tf
from bakery.images.pickle_loader import CheckpointError
from bakery.images.safe_pickle import describe
from bakery.images.stylegan2 import StyleGAN2
from bakery.images.stylegan2_pytorch import _attr, _child, _expect_class, _fully_connected, _read_mapping, _Reader
from bakery.images.torch_pickle import TorchModule

IDENTITY = np.eye(3)


def _number(module: TorchModule, name: str, where: str, source: str, kind=int, default=None):
    """A numeric attribute of the module state, checked: a crafted file may put anything there."""
    value = _attr(module, name, where, source, default=default, required=default is None)
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
        and math.isfinite(float(value)) and abs(float(value)) < 1 << 31
    if not ok or (kind is int and float(value) != int(value)):
        raise CheckpointError(f"{source}: {where}.{name}={describe(value)} is not {'an integer' if kind is int else 'a number'}")
    return kind(value)


def _as_pair(value, what: str, source: str) -> tuple[int, int]:
    """A stored [width, height] (numpy int64 array, list or int) → two positive ints."""
    try:
        arr = np.broadcast_to(np.asarray(value), [2])
    except (ValueError, TypeError):
        arr = None
    if arr is None or arr.dtype.kind not in "iu" or not all(0 < int(v) < 1 << 16 for v in arr):
        raise CheckpointError(f"{source}: {what}={describe(value)} is not a size [width, height]")
    return int(arr[0]), int(arr[1])


def _positive_int(value, what: str, source: str, limit: int = 64) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < int(value) <= limit:
        raise CheckpointError(f"{source}: {what}={describe(value)} is not an integer in 1..{limit}")
    return int(value)


def _filter(layer: TorchModule, name: str, where: str, source: str, radial_ok: bool):
    """A stored low-pass filter buffer → (float32 kernel for tf.nn.depthwise_conv2d: flipped,
    since NVIDIA's upfirdn2d convolves and TF cross-correlates; 1 or 2 dims) or None (identity)."""
    if name not in layer.buffers:
        raise CheckpointError(f"{source}: {where} has no {name} buffer")
    f = layer.buffers[name]
    if f is None:
        return None
    f = np.asarray(f, np.float64)
    if f.ndim not in (1, 2) or (f.ndim == 2 and (f.shape[0] != f.shape[1] or not radial_ok)) \
            or not 0 < f.shape[0] <= 256 or not np.all(np.isfinite(f)):
        raise CheckpointError(f"{source}: {where}.{name} has shape {list(f.shape)}: expected [taps]"
                              f"{' or [taps, taps]' if radial_ok else ''} of finite values")
    return f[::-1] if f.ndim == 1 else f[::-1, ::-1]


class StyleGAN3(Generator):
    """A StyleGAN3 Generator (networks_stylegan3.py) read from the plain-data module tree."""

    takes_transform = True  # the Renderer feeds a per-image input transform [N, 3, 3]
    embed = None

    mapping = StyleGAN2.mapping  # the same MappingNetwork maths as stylegan2-ada-pytorch's

    def __init__(self, g: TorchModule, source: str):
        _expect_class(g, "Generator", "the generator", source)
        self.source = source
        mapping = _child(g, "mapping", "MappingNetwork", "G", source)
        synthesis = _child(g, "synthesis", "SynthesisNetwork", "G", source)
        self.z_dim, self.w_dim = _number(g, "z_dim", "G", source), _number(g, "w_dim", "G", source)
        self.c_dim = _number(g, "c_dim", "G", source)
        if self.c_dim < 0:
            raise CheckpointError(f"{source}: c_dim={self.c_dim} is negative")
        if self.z_dim < 1:
            raise CheckpointError(f"{source}: z_dim={self.z_dim}: generators without a latent input are not supported")
        self.resolution = _number(g, "img_resolution", "G", source)
        self.channels = _number(g, "img_channels", "G", source)
        self.num_ws = _number(g, "num_ws", "G", source)
        self.default_cutoff = self.num_ws  # truncation_cutoff=None truncates every row
        self.noise_shapes, self.const_noise = [], []  # no noise inputs
        rd = _Reader(g, source)
        _read_mapping(self, rd, mapping)
        if _number(mapping, "num_ws", "G.mapping", source) != self.num_ws:
            raise CheckpointError(f"{source}: G.mapping num_ws disagrees with the generator's ({self.num_ws})")
        self._read_synthesis(rd, synthesis)
        rd.check_all_used()

    # -- reading the synthesis network -----------------------------------------------------------
    def _read_synthesis(self, rd: _Reader, syn: TorchModule) -> None:
        src = self.source
        names = _attr(syn, "layer_names", "G.synthesis", src)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names) \
                or set(names) | {"input"} != set(syn.children) or "input" in names:
            raise CheckpointError(f"{src}: G.synthesis: layer_names {str(names)[:80]} do not match its "
                                  f"sub-modules ({', '.join(syn.children)})")
        if len(names) + 1 != self.num_ws or _number(syn, "num_ws", "G.synthesis", src) != self.num_ws:
            raise CheckpointError(f"{src}: G.synthesis has {len(names)} layers for {self.num_ws} W rows "
                                  "(expected one row for the input layer and one per layer)")
        self.output_scale = _number(syn, "output_scale", "G.synthesis", src, float, default=1.0)
        self._read_input(rd, _child(syn, "input", "SynthesisInput", "G.synthesis", src))
        channels, size = self.input_channels, self.input_size
        self.layers = []
        for name in names:
            layer = self._read_layer(rd, _child(syn, name, "SynthesisLayer", "G.synthesis", src),
                                     f"synthesis.{name}", channels, size)
            self.layers.append(layer)
            channels, size = layer["out_channels"], layer["out_size"]
        if not self.layers[-1]["is_torgb"] or any(layer["is_torgb"] for layer in self.layers[:-1]):
            raise CheckpointError(f"{src}: G.synthesis: the last layer, and only it, must be the ToRGB layer")
        if (channels, size) != (self.channels, (self.resolution, self.resolution)):
            raise CheckpointError(f"{src}: G.synthesis ends with {channels} channels of {size[0]}×{size[1]}, "
                                  f"not the {self.channels} of {self.resolution}×{self.resolution} the generator states")
        self.kind = "StyleGAN3-R" if any(layer["kernel"] == 1 for layer in self.layers[:-1]) else "StyleGAN3-T"

    def _read_input(self, rd: _Reader, layer: TorchModule) -> None:
        src, where = self.source, "synthesis.input"
        c = self.input_channels = _number(layer, "channels", where, src)
        self.input_size = _as_pair(_attr(layer, "size", where, src), f"{where}.size", src)
        sampling_rate = _number(layer, "sampling_rate", where, src, float)
        bandwidth = _number(layer, "bandwidth", where, src, float)
        if not (math.isfinite(sampling_rate) and math.isfinite(bandwidth) and sampling_rate / 2 != bandwidth
                and sampling_rate > 0):
            raise CheckpointError(f"{src}: {where}: sampling_rate {sampling_rate} / bandwidth {bandwidth} unusable")
        self.affine_t = _fully_connected(rd, _child(layer, "affine", "FullyConnectedLayer", where, src),
                                         f"{where}.affine", self.w_dim, 4, "linear")
        rd.take(f"{where}.transform", (3, 3))  # gen_images.py overwrites it: every render brings its own
        self.freqs = tf.constant(rd.take(f"{where}.freqs", (c, 2)).astype(np.float32))
        self.phases = tf.constant(rd.take(f"{where}.phases", (c,)).astype(np.float32))
        self.input_mix = tf.constant((rd.take(f"{where}.weight", (c, c)) / math.sqrt(c)).T.astype(np.float32))
        # out-of-band frequencies fade out linearly between the bandwidth and half the sampling rate
        self.bandwidth, self.fade_width = bandwidth, sampling_rate / 2 - bandwidth
        # torch's affine_grid (align_corners=False): pixel centres (2i + 1)/n − 1, scaled by theta
        w, h = self.input_size
        self.grid_x = tf.constant((0.5 * w / sampling_rate * ((2 * np.arange(w) + 1) / w - 1))
                                  .astype(np.float32)[None, :, None])  # [1, W, 1]
        self.grid_y = tf.constant((0.5 * h / sampling_rate * ((2 * np.arange(h) + 1) / h - 1))
                                  .astype(np.float32)[:, None, None])  # [H, 1, 1]

    def _read_layer(self, rd: _Reader, layer: TorchModule, where: str, cin: int, in_size) -> dict:
        src = self.source
        a = lambda name: _attr(layer, name, where, src)  # noqa: E731
        is_torgb = a("is_torgb")
        if not isinstance(is_torgb, (bool, np.bool_)):
            raise CheckpointError(f"{src}: {where}.is_torgb={describe(is_torgb)} is not true or false")
        size = _as_pair(a("in_size"), f"{where}.in_size", src)
        if _number(layer, "in_channels", where, src) != cin or size != in_size:
            raise CheckpointError(f"{src}: {where}: takes {a('in_channels')} channels of {list(size)}, "
                                  f"but the layer before gives {cin} of {list(in_size)}")
        cout = _number(layer, "out_channels", where, src)
        out_size = _as_pair(a("out_size"), f"{where}.out_size", src)
        k = _positive_int(a("conv_kernel"), f"{where}.conv_kernel", src, 15)
        up = _positive_int(a("up_factor"), f"{where}.up_factor", src, 16)
        down = _positive_int(a("down_factor"), f"{where}.down_factor", src, 16)
        padding = a("padding")
        if not (isinstance(padding, (list, tuple)) and len(padding) == 4
                and all(isinstance(p, int) and abs(p) < 1 << 16 for p in padding)):
            raise CheckpointError(f"{src}: {where}: padding {describe(padding)} is not [x0, x1, y0, y1]")
        clamp = _number(layer, "conv_clamp", where, src, float) if layer.attrs.get("conv_clamp") is not None else None
        fu = _filter(layer, "up_filter", where, src, radial_ok=True)
        fd = _filter(layer, "down_filter", where, src, radial_ok=True)
        rd.used.update({f"{where}.up_filter", f"{where}.down_filter"})  # read (and checked) by _filter
        # the output size filtered_lrelu computes must be the one the layer states
        conv = (in_size[0] + k - 1, in_size[1] + k - 1)
        taps = lambda f: 1 if f is None else f.shape[0]  # noqa: E731
        got = tuple((n * up + p0 + p1 - (taps(fu) - 1) - (taps(fd) - 1) + down - 1) // down
                    for n, p0, p1 in ((conv[0], *padding[:2]), (conv[1], *padding[2:])))
        if got != out_size:
            raise CheckpointError(f"{src}: {where}: its sizes, factors, padding and filters give "
                                  f"{got[0]}×{got[1]}, not the stated out_size {out_size[0]}×{out_size[1]}")
        weight = rd.take(f"{where}.weight", (cout, cin, k, k)).transpose(2, 3, 1, 0)  # → [kh, kw, in, out]
        magnitude = float(rd.take(f"{where}.magnitude_ema", ()))
        if not magnitude > 0:
            raise CheckpointError(f"{src}: {where}: magnitude_ema {magnitude} is not positive")
        if not is_torgb:  # modulated_conv2d's pre-normalisation (it cancels in the demodulation
            weight = weight / np.sqrt(np.mean(np.square(weight), axis=(0, 1, 2), keepdims=True))  # but for eps)
        style_a, style_b = _fully_connected(rd, _child(layer, "affine", "FullyConnectedLayer", where, src),
                                            f"{where}.affine", self.w_dim, cin, "linear")
        return dict(
            name=where, is_torgb=is_torgb, kernel=k, in_channels=cin, in_size=in_size,
            out_channels=cout, out_size=out_size,
            style=(style_a, style_b),
            style_gain=1 / math.sqrt(cin * k * k) if is_torgb else 1.0,
            weight=tf.constant(weight.astype(np.float32)),
            wsq=tf.constant(np.square(weight).sum(axis=(0, 1)).astype(np.float32)),  # [in, out]
            input_gain=np.float32(1 / math.sqrt(magnitude)),
            bias=tf.constant(rd.take(f"{where}.bias", (cout,)).astype(np.float32)),
            up=up, down=down, padding=tuple(padding), fu=fu, fd=fd,
            slope=1.0 if is_torgb else 0.2, gain=1.0 if is_torgb else SQRT2,
            clamp=clamp,
        )

    # -- rendering ---------------------------------------------------------------------------------
    def synthesis(self, ws, noise=(), transform=None):
        """ws [N, num_ws, w_dim] (noise: none), transform [N, 3, 3] (None: identity) → NHWC image."""
        if transform is None:
            transform = tf.tile(tf.constant(IDENTITY[None], tf.float32), [ws.shape[0], 1, 1])
        return per_image(self._synthesis_one, batched=2)(ws, transform)

    def _synthesis_one(self, ws, transform):
        x = self._input(ws[:, 0], transform)
        for i, layer in enumerate(self.layers):
            x = self._layer(x, ws[:, i + 1], layer)
        return x * self.output_scale if self.output_scale != 1 else x

    def _input(self, w, transform):
        """SynthesisInput.forward for one image: w [1, w_dim], transform [1, 3, 3] → [1, H, W, C]."""
        t = dense(w, *self.affine_t)  # (r_c, r_s, t_x, t_y)
        t = t / tf.norm(t[:, :2], axis=1, keepdims=True)
        rc, rs, tx, ty = t[0, 0], t[0, 1], t[0, 2], t[0, 3]
        one, zero = tf.ones_like(rc), tf.zeros_like(rc)
        m_r = tf.stack([tf.stack([rc, -rs, zero]), tf.stack([rs, rc, zero]), tf.stack([zero, zero, one])])
        m_t = tf.stack([tf.stack([one, zero, -tx]), tf.stack([zero, one, -ty]), tf.stack([zero, zero, one])])
        m = tf.matmul(tf.matmul(m_r, m_t), transform[0])  # rotate, then translate, then the user's
        phases = self.phases + tf.matmul(self.freqs, m[:2, 2:])[:, 0]
        freqs = tf.matmul(self.freqs, m[:2, :2])  # [C, 2], row vectors
        amplitudes = tf.clip_by_value(1 - (tf.norm(freqs, axis=1) - self.bandwidth) / self.fade_width, 0, 1)
        x = self.grid_x * freqs[:, 0] + self.grid_y * freqs[:, 1] + phases  # [H, W, C]
        x = tf.sin(x * (np.pi * 2)) * amplitudes
        h, w_ = x.shape[0], x.shape[1]
        x = tf.matmul(tf.reshape(x, [h * w_, -1]), self.input_mix)
        return tf.reshape(x, [1, h, w_, -1])

    def _layer(self, x, w, layer):
        """SynthesisLayer.forward for one image: modulated conv, then the filtered leaky ReLU."""
        a, b = layer["style"]
        s = dense(w, a, b)  # [1, in]
        if layer["is_torgb"]:
            s = s * layer["style_gain"]
            scale = tf.fill([1, layer["out_channels"]], layer["input_gain"])
        else:
            s = s * rsqrt_exact(tf.reduce_mean(tf.square(s)))
            scale = rsqrt_exact(dense(tf.square(s), layer["wsq"]) + 1e-8) * layer["input_gain"]  # [1, out]
        kernel = layer["weight"] * s[0][:, None] * scale[0]
        pad = layer["kernel"] - 1  # full convolution: the output grows by k − 1
        if pad:
            x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        x = tf.nn.conv2d(x, kernel, strides=1, padding="VALID")
        return _filtered_lrelu(x + layer["bias"], layer)


    def flops_per_image(self) -> float:
        """Multiply-adds ×2 of the modulated convolutions (the bulk of the work), for the benchmark."""
        total = 0.0
        for layer in self.layers:
            k, (w, h) = layer["kernel"], layer["in_size"]
            total += 2.0 * k * k * layer["in_channels"] * layer["out_channels"] * (w + k - 1) * (h + k - 1)
        return total


# -- filtered leaky ReLU (NVIDIA's _filtered_lrelu_ref, NHWC) -------------------------------------

def _filtered_lrelu(x, layer: dict):
    """upfirdn2d(up, padding, gain up²), leaky ReLU × gain, clamp, upfirdn2d(down)."""
    up, down, fu, fd = layer["up"], layer["down"], layer["fu"], layer["fd"]
    x = _upsample(x, up, layer["padding"], fu)
    x = tf.nn.leaky_relu(x, alpha=layer["slope"]) if layer["slope"] != 1 else x
    x = x * layer["gain"] if layer["gain"] != 1 else x
    if layer["clamp"] is not None:
        x = tf.clip_by_value(x, -layer["clamp"], layer["clamp"])
    return _downsample(x, down, fd)


def _depthwise(x, kernel: np.ndarray, stride: int = 1):
    """Filter every channel with the same 2-D kernel [kh, kw] (no padding), stride in both axes."""
    c = x.shape[-1]
    k = tf.constant(np.tile(kernel[:, :, None, None], [1, 1, c, 1]).astype(np.float32))
    return tf.nn.depthwise_conv2d(x, k, strides=[1, stride, stride, 1], padding="VALID")


def _upsample(x, up: int, padding, f):
    """upfirdn2d's up half: zero-insert so each sample is first of every `up`, pad (or crop, if
    negative) by [x0, x1, y0, y1], filter (×up per 1-D pass, ×up² for a 2-D filter). A 1-D
    filter runs polyphase along the width, then the height (_upsample_axis); a 2-D one the
    plain way."""
    x0, x1, y0, y1 = padding
    if f is not None and f.ndim == 1:
        return _upsample_axis(_upsample_axis(x, f, up, x0, x1, axis=2), f, up, y0, y1, axis=1)
    _, h, w, c = x.shape
    if up > 1:
        x = tf.reshape(x, [1, h, 1, w, 1, c])
        x = tf.pad(x, [[0, 0], [0, 0], [0, up - 1], [0, 0], [0, up - 1], [0, 0]])
        x = tf.reshape(x, [1, h * up, w * up, c])
    x = tf.pad(x, [[0, 0], [max(y0, 0), max(y1, 0)], [max(x0, 0), max(x1, 0)], [0, 0]])
    x = x[:, max(-y0, 0):x.shape[1] - max(-y1, 0), max(-x0, 0):x.shape[2] - max(-x1, 0)]
    if f is None:
        return x * float(up * up) if up > 1 else x
    return _depthwise(x, f * (up * up))


def _polyphase(g: np.ndarray, up: int, p0: int) -> tuple[np.ndarray, int]:
    """Zero-inserting by `up`, padding by p0 and correlating with g is, for the outputs of phase
    r (index ≡ r mod up), a correlation of the input itself with the taps g[k_r::up],
    k_r = (p0 − r) mod up, starting o_r = (r + k_r − p0)/up samples in. All phases as the
    columns of one kernel [taps, up] over a common start o_min: returns (kernel × up, o_min)."""
    phases = []
    for r in range(up):
        k_r = (p0 - r) % up
        phases.append((g[k_r::up], (r + k_r - p0) // up))
    o_min = min(o for _, o in phases)
    taps = max(o - o_min + len(h) for h, o in phases)
    kernel = np.zeros((taps, up))
    for r, (h, o) in enumerate(phases):
        kernel[o - o_min:o - o_min + len(h), r] = h
    return kernel * up, o_min


def _upsample_axis(x, g: np.ndarray, up: int, p0: int, p1: int, axis: int):
    """One 1-D pass of upfirdn2d's up half along the width (axis 2) or height (axis 1), polyphase:
    every output phase is computed at the input's rate (no multiplications by inserted zeros),
    as one depthwise conv with a channel multiplier of `up`, then interleaved. The same sums as
    the zero-inserted form, term for term."""
    n, c, taps_in = x.shape[axis], x.shape[3], g.shape[0]
    m = n * up + p0 + p1 - (taps_in - 1)  # output length
    kernel, o_min = _polyphase(g, up, p0)
    taps, count = kernel.shape[0], -(-m // up)  # outputs per phase (the last phases may overrun m)
    left, right = max(0, -o_min), max(0, count + taps - 1 + o_min - n)
    pads = [[0, 0], [0, 0], [0, 0], [0, 0]]
    pads[axis] = [left, right]
    x = tf.pad(x, pads)
    window = [slice(None)] * 4
    window[axis] = slice(o_min + left, o_min + left + count + taps - 1)
    x = x[tuple(window)]
    shape = (1, taps) if axis == 2 else (taps, 1)
    k = tf.constant(np.tile(kernel.reshape(shape + (1, up)), [1, 1, c, 1]).astype(np.float32))
    y = tf.nn.depthwise_conv2d(x, k, strides=[1, 1, 1, 1], padding="VALID")  # channels (c, phase)
    _, h, w, _ = y.shape
    if axis == 2:
        y = tf.reshape(tf.transpose(tf.reshape(y, [1, h, w, c, up]), [0, 1, 2, 4, 3]), [1, h, w * up, c])
        return y[:, :, :m]
    y = tf.reshape(tf.transpose(tf.reshape(y, [1, h, w, c, up]), [0, 1, 4, 2, 3]), [1, h * up, w, c])
    return y[:, :m]


def _downsample(x, down: int, f):
    """upfirdn2d's down half: filter (no padding), keep every `down`-th sample from the first."""
    if f is None:
        return x[:, ::down, ::down] if down > 1 else x
    if f.ndim == 2:
        return _depthwise(x, f, stride=down)
    # 1-D: strided passes that compute only the kept samples. TF's depthwise conv strides both
    # axes alike, so each pass is arranged to have nothing to stride on the other axis: rows
    # as the batch for the width pass, the columns folded into the channels for the height pass.
    _, h, w, c = x.shape
    taps = f.shape[0]
    k = tf.constant(np.tile(f.reshape(1, taps, 1, 1), [1, 1, c, 1]).astype(np.float32))
    x = tf.nn.depthwise_conv2d(tf.reshape(x, [h, 1, w, c]), k, strides=[1, down, down, 1], padding="VALID")
    w = x.shape[2]
    k = tf.constant(np.tile(f.reshape(taps, 1, 1, 1), [1, 1, w * c, 1]).astype(np.float32))
    x = tf.nn.depthwise_conv2d(tf.reshape(x, [1, h, 1, w * c]), k, strides=[1, down, down, 1], padding="VALID")
    return tf.reshape(x, [1, x.shape[1], w, c])
