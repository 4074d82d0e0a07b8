"""TensorFlow 2 building blocks shared by the StyleGAN 1 and 2 generators (NHWC layout).

NVIDIA's TF1 code runs NCHW; TF's CPU kernels want NHWC, so activations here are NHWC
and only the final image is reported NCHW where parity with NVIDIA's output matters.
All functions are pure: weights come in as arguments (already scaled at load time).
"""

from __future__ import annotations

import functools

import numpy as np

from bakery.images.tfsetup import import_tf

tf = import_tf()

SQRT2 = float(np.sqrt(2.0))


def per_image(op=None, *, batched: int = 1):
    """Run a reducing op (convolution, matmul, spatial mean) on one image at a time; the first
    `batched` positional arguments are split along the batch, the rest are shared.

    TF's CPU kernels for these pick register blocks and loop tails by the size of the whole
    tensor, so the same image rounds differently in a batch of 2 than alone (measured on an
    AVX2 machine: the last images of a batch drift by ~1e-7, even single-threaded, and padding
    the batch does not cure it). Identical [1, ...] shapes run identical code, so an image
    gets the same bits whatever batch it is in. Elementwise ops are exactly rounded anyway
    and stay batched; the per-image ops of a batch run concurrently on TF's inter-op pool.
    Needs a static batch size (the renderer traces one graph per batch size)."""
    if op is None:
        return functools.partial(per_image, batched=batched)

    @functools.wraps(op)
    def run(*args, **kwargs):
        n = args[0].shape[0]
        if n is None:
            raise ValueError(f"{op.__name__}: per-image ops need a static batch size")
        if n == 1:
            return op(*args, **kwargs)
        split, shared = args[:batched], args[batched:]
        parts = zip(*(tf.split(t, n, axis=0) for t in split))
        return tf.concat([op(*one, *shared, **kwargs) for one in parts], axis=0)

    return run


def lrelu(x, gain: float = 1.0):
    return tf.nn.leaky_relu(x, alpha=0.2) * gain if gain != 1.0 else tf.nn.leaky_relu(x, alpha=0.2)


def fir_kernel(taps, gain: float = 1.0) -> np.ndarray:
    """Separable FIR from 1-D taps: outer product normalised to sum 1, times gain.
    Flipped like NVIDIA's upfirdn (they convolve, TF cross-correlates); symmetric taps don't care."""
    k = np.asarray(taps, np.float64)
    k = np.outer(k, k) if k.ndim == 1 else k
    k = k / k.sum() * gain
    return k[::-1, ::-1].astype(np.float32)


@per_image
def depthwise_fir(x, kernel: np.ndarray, pad0: int, pad1: int, stride: int = 1):
    """Zero-pad H and W by (pad0, pad1), filter every channel with the same 2-D kernel, keep
    every `stride`-th pixel."""
    channels = x.shape[-1]
    k = tf.constant(np.tile(kernel[:, :, None, None], [1, 1, channels, 1]))
    x = tf.pad(x, [[0, 0], [pad0, pad1], [pad0, pad1], [0, 0]])
    return tf.nn.depthwise_conv2d(x, k, strides=[1, stride, stride, 1], padding="VALID")


def zero_insert(x):
    """[N, H, W, C] → [N, 2H, 2W, C] with each input pixel at an even position, zeros between."""
    _, h, w, c = x.shape
    x = tf.reshape(x, [-1, h, 1, w, 1, c])
    x = tf.pad(x, [[0, 0], [0, 0], [0, 1], [0, 0], [0, 1], [0, 0]])
    return tf.reshape(x, [-1, 2 * h, 2 * w, c])


def nearest_upscale(x):
    """Each pixel becomes a 2×2 block (StyleGAN 1's upscale2d)."""
    _, h, w, c = x.shape
    x = tf.reshape(x, [-1, h, 1, w, 1, c])
    x = tf.tile(x, [1, 1, 2, 1, 2, 1])
    return tf.reshape(x, [-1, 2 * h, 2 * w, c])


def transposed_to_phases(kernel_t: np.ndarray, offset: int) -> np.ndarray:
    """A stride-2 conv2d_transpose kernel [L, L, out, in] (output cropped by `offset` in front)
    → the equivalent sub-pixel form: one 3×3 SAME conv [3, 3, in, 4·out] whose channel groups
    are the four output phases, put in place by depth_to_space. Output pixel 2p + a reads
    input pixels p − 1 … p + 1 through taps offset + 2 + a − 2t. Regular convolutions give
    every image the same bits whatever the batch size; TF's transposed convs do not."""
    taps, _, cout, cin = kernel_t.shape
    k = np.zeros((3, 3, cin, 2, 2, cout), np.float64)
    for a in (0, 1):
        for b in (0, 1):
            for t in range(3):
                for s in range(3):
                    u, v = offset + 2 + a - 2 * t, offset + 2 + b - 2 * s
                    if 0 <= u < taps and 0 <= v < taps:
                        k[t, s, :, a, b, :] = kernel_t[u, v].T
    return k.reshape(3, 3, cin, 4 * cout).astype(np.float32)


@per_image
def upsample_by_phases(x, phases):
    """Apply a `transposed_to_phases` kernel: [N, H, W, in] → [N, 2H, 2W, out]."""
    return tf.nn.depth_to_space(tf.nn.conv2d(x, phases, strides=1, padding="SAME"), 2)


@per_image
def conv3x3(x, weight):
    """Stride-1 cross-correlation with zero SAME padding (HWIO kernel), as tf.nn.conv2d in TF1."""
    return tf.nn.conv2d(x, weight, strides=1, padding="SAME")


@per_image
def dense(x, weight, bias=None):
    """x [N, K] @ weight [K, O] (+ bias), one row at a time (see per_image)."""
    y = tf.matmul(x, weight)
    return y if bias is None else y + bias


@per_image
def conv1x1(x, weight):
    """Per-pixel channel mix [C, O] as a 1×1 convolution."""
    return tf.nn.conv2d(x, weight[None, None], strides=1, padding="VALID")


@per_image
def spatial_mean(x):
    """Mean over H and W per image and channel, kept as [N, 1, 1, C]."""
    return tf.reduce_mean(x, axis=[1, 2], keepdims=True)


def rsqrt_exact(x):
    """1/sqrt(x) from correctly rounded sqrt and division. tf.math.rsqrt uses a SIMD
    approximation for vector-width chunks and a scalar path for the rest, so an element's
    result would depend on where it falls in the batch. (DivNoNan, because grappler rewrites
    a plain 1/sqrt back into Rsqrt.)"""
    return tf.math.divide_no_nan(tf.ones_like(x), tf.sqrt(x))


def normalize_2nd_moment(z, eps: float = 1e-8):
    """z · rsqrt(mean(z²) + eps) per row; the mean as a per-row product through `dense`."""
    k = z.shape[-1]
    mean_sq = dense(tf.square(z), tf.constant(np.full((k, 1), 1.0 / k, np.float32)))
    return z * rsqrt_exact(mean_sq + eps)

