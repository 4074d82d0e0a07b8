"""The discriminator interface, the TF2 layers NVIDIA's discriminators share, and the scorer.

A discriminator turns uint8 RGB images into one raw logit each, as NVIDIA's training loop
feeds them: `[H, W, 3]` → CHW float32 `x / 127.5 − 1`; the logit (no sigmoid) is the score.
Activations here are NHWC (TF's CPU kernels want it); NVIDIA's NCHW orders that matter (the
flatten before the dense layer) are folded into the weights at load time.

The minibatch-stddev layer makes a logit depend on the other images of its group, and its
groups are strided: NVIDIA reshapes a batch of N to [G, N/G, ...], so sample i joins group
i mod (N/G) — a batch of 8 with group size 4 forms {0, 2, 4, 6} and {1, 3, 5, 7}. The layer
below does exactly that; `DScorer.minibatches` lays several independent minibatches out so
that NVIDIA's strided groups are each minibatch's own groups, and the other layers run one
image at a time (layers.per_image), so a minibatch gets the same bits alone or batched.
"""

from __future__ import annotations

import math

import numpy as np

from bakery.images.layers import SQRT2, dense, depthwise_fir, fir_kernel, lrelu, per_image, tf
from bakery.images.pickle_loader import CheckpointError

MBSTD_EPS = 1e-8


class Discriminator:
    """What every discriminator provides: `forward(x, c, groups)` on NHWC floats in [-1, 1]."""

    kind: str
    resolution: int
    channels: int = 3
    c_dim: int = 0  # one-hot class size of a conditional model (0: unconditional)
    mbstd_group_size: int | None = 4  # None: the whole minibatch is one group (NVIDIA's None)
    mbstd_num_channels: int = 1  # 0: no minibatch-stddev layer

    def forward(self, x, c, groups: int):
        """x [N, R, R, channels] float32 in [-1, 1], c [N, c_dim] one-hot → logits [N, 1];
        `groups` is NVIDIA's N/G: sample i is in minibatch-stddev group i mod groups."""
        raise NotImplementedError

    def group_size(self, n: int) -> int:
        """NVIDIA's G for a call with n images: min(group size, n), the whole batch if None."""
        if self.mbstd_num_channels == 0:
            return 1
        return n if self.mbstd_group_size is None else max(1, min(self.mbstd_group_size, n))


# -- layers --------------------------------------------------------------------------------

@per_image
def conv2d(x, weight, stride: int = 1, padding: str = "SAME"):
    """Cross-correlation with the HWIO kernel as stored (NVIDIA applies D's kernels unflipped)."""
    return tf.nn.conv2d(x, weight, strides=stride, padding=padding)


def fir_down(x, kernel: np.ndarray, pad: int, stride: int):
    """Zero-pad by `pad` on every side, filter every channel with the 2-D FIR, keep every
    `stride`-th pixel."""
    return depthwise_fir(x, kernel, pad, pad, stride)


def conv_layer(weight: np.ndarray, bias: np.ndarray | None, *, down: bool = False, act: bool = True,
               gain: float = 1.0, clamp: float | None = None) -> dict:
    """One conv layer: weight HWIO already times its weight gain; `gain` multiplies after the
    activation (lrelu · √2 · gain, or linear · gain), then a clamp to ±clamp (conv_clamp · gain)."""
    return dict(weight=tf.constant(np.asarray(weight, np.float32)), down=down, act=act, gain=float(gain),
                bias=None if bias is None else tf.constant(np.asarray(bias, np.float32)), clamp=clamp)


def apply_conv(x, layer: dict, fir: np.ndarray):
    """NVIDIA's conv2d_resample: a 3×3 down conv pads 2, filters (H+1), convolves with stride 2;
    a 1×1 down conv pads 1 and filters keeping every second pixel, then mixes channels."""
    w = layer["weight"]
    if layer["down"] and w.shape[0] > 1:
        x = conv2d(fir_down(x, fir, fir.shape[0] // 2, 1), w, 2, "VALID")
    elif layer["down"]:
        x = conv2d(fir_down(x, fir, (fir.shape[0] - 2) // 2, 2), w, 1, "VALID")
    else:
        x = conv2d(x, w, 1, "SAME")
    return bias_act(x, layer)


def bias_act(x, layer: dict):
    if layer["bias"] is not None:
        x = x + layer["bias"]
    x = lrelu(x, SQRT2 * layer["gain"]) if layer["act"] else (x * layer["gain"] if layer["gain"] != 1 else x)
    return x if layer["clamp"] is None else tf.clip_by_value(x, -layer["clamp"], layer["clamp"])


def dense_layer(weight: np.ndarray, bias: np.ndarray | None, act: bool, gain: float = 1.0) -> dict:
    """weight [in, out] already scaled; bias already scaled; lrelu · √2 · gain or linear."""
    out = weight.shape[1]
    return dict(weight=tf.constant(np.asarray(weight, np.float32)), act=act, gain=float(gain), clamp=None,
                bias=tf.constant(np.asarray(np.zeros(out) if bias is None else bias, np.float32)))


def apply_dense(x, layer: dict):
    x = dense(x, layer["weight"], layer["bias"])
    return lrelu(x, SQRT2 * layer["gain"]) if layer["act"] else x


def nchw_flatten_rows(weight: np.ndarray, channels: int, size: int) -> np.ndarray:
    """A dense weight [C·H·W, out] for NVIDIA's NCHW flatten → the same for an NHWC flatten."""
    out = weight.shape[1]
    return weight.reshape(channels, size, size, out).transpose(1, 2, 0, 3).reshape(-1, out)


@per_image
def _row_mean(y):
    return tf.reduce_mean(y, axis=-1)


def minibatch_stddev(x, group_size: int, num_channels: int, groups: int):
    """NVIDIA's MinibatchStdLayer with G = group_size and n = groups (N = G·n): reshape to
    [G, n, H, W, F, c], biased variance over G, sqrt(· + 1e-8), mean over H, W, c, and append
    the F numbers of each group to its members as constant channels. The sums over G are
    written out in order, so a group's bits do not depend on how many groups share the batch."""
    _, h, w, ch = x.shape
    f = num_channels
    y = tf.reshape(x, [group_size, groups, h, w, f, ch // f])
    members = tf.unstack(y, axis=0)
    mean = _ordered_sum(members) / group_size
    var = _ordered_sum([tf.square(m - mean) for m in members]) / group_size
    std = tf.sqrt(var + MBSTD_EPS)  # [n, H, W, F, c]
    std = _row_mean(tf.reshape(tf.transpose(std, [0, 3, 1, 2, 4]), [groups, f, -1]))  # [n, F]
    std = tf.tile(std, [group_size, 1])  # row i = group i mod n
    return tf.concat([x, tf.broadcast_to(std[:, None, None, :], [group_size * groups, h, w, f])], axis=-1)


def _ordered_sum(terms):
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def check_channels(ch: int, num_channels: int, where: str) -> None:
    if num_channels < 0 or (num_channels and ch % num_channels):
        raise CheckpointError(f"{where}: minibatch-stddev channels {num_channels} do not divide the "
                              f"{ch} feature maps")


def resample_fir(taps) -> np.ndarray:
    """NVIDIA's down-sampling filter, normalised to sum 1 (symmetric, so no flip matters)."""
    return fir_kernel(taps)


def weight_gain(fan_in: int, gain: float = 1.0) -> float:
    return gain / math.sqrt(fan_in)


# -- scoring ----------------------------------------------------------------------------------

def to_float(images_uint8):
    """uint8 RGB [N, H, W, 3] → float32 in [-1, 1] as NVIDIA's training loop (x / 127.5 − 1)."""
    return tf.cast(images_uint8, tf.float32) / 127.5 - 1.0


def group_layout(minibatches: int, size: int, group: int) -> np.ndarray:
    """Where NVIDIA's strided layer must see each image so that `minibatches` consecutive
    minibatches of `size` images are grouped exactly as each alone would be: alone, image j of
    a minibatch joins group j mod (size/group) as member j div (size/group); batched, member t
    of group q sits at position t·(total groups) + q. Returns order: batch[p] = images[order[p]]."""
    per = size // group
    order = np.empty(minibatches * size, np.int64)
    for m in range(minibatches):
        for j in range(size):
            order[(j // per) * minibatches * per + m * per + j % per] = m * size + j
    return order


class DScorer:
    """A compiled uint8 images (+ one-hot labels) → logits pass for one discriminator."""

    def __init__(self, d: Discriminator):
        from bakery.images.tfsetup import device_name

        self.d, self.device = d, device_name()
        self._run = tf.function(self._forward)  # traced per batch shape and group count

    def _forward(self, images, c, groups):
        return self.d.forward(to_float(images), c, groups)[:, 0]

    def _call(self, images: np.ndarray, labels: np.ndarray | None, groups: int) -> np.ndarray:
        images = np.asarray(images)
        n = len(images)
        expected = (self.d.resolution, self.d.resolution, self.d.channels)
        if images.dtype != np.uint8 or images.shape[1:] != expected:
            raise ValueError(f"images must be uint8 {list(expected)}, got {images.dtype} {list(images.shape[1:])}")
        c = np.zeros((n, self.d.c_dim), np.float32) if labels is None else np.asarray(labels, np.float32)
        if c.shape != (n, self.d.c_dim):
            raise ValueError(f"labels must be [{n}, {self.d.c_dim}], got {list(c.shape)}")
        with tf.device(self.device):
            return self._run(tf.constant(images), tf.constant(c), groups).numpy()

    def run(self, images: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """One NVIDIA call, `D(img, c)` / `D.run(images, labels, minibatch_size=N)`: the N images
        form NVIDIA's strided groups (N must be a multiple of the group size)."""
        n = len(images)
        g = self.d.group_size(n)
        if n % g:
            raise ValueError(f"a batch of {n} does not split into minibatch-stddev groups of {g}")
        return self._call(images, labels, n // g)

    def minibatches(self, images: np.ndarray, labels: np.ndarray | None, size: int) -> np.ndarray:
        """Consecutive minibatches of `size` images in one call, each scored as if alone."""
        n = len(images)
        g = self.d.group_size(size)
        if n % size or size % g:
            raise ValueError(f"{n} images do not split into minibatches of {size} with stddev groups of {g}")
        order = group_layout(n // size, size, g)
        labels = None if labels is None else np.asarray(labels)[order]
        logits = self._call(np.asarray(images)[order], labels, n // g)
        out = np.empty_like(logits)
        out[order] = logits
        return out
