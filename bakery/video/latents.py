"""The maths of the videos, in plain numpy: looping random walks, W-row style mixing and
equal-step circular paths. No TensorFlow here; rendering is the caller's job.

A walk is what the StyleGAN tutorial's video scripts drew: white Gaussian latents, one per
frame, smoothed over time by a Gaussian of `sigma` frames with wrap-around (so the last
frame leads smoothly into the first and the video loops), then scaled to unit RMS over the
whole walk so the latents stay as large as N(0, 1) draws.
"""

from __future__ import annotations

import math

import numpy as np

from bakery.errors import BakeryError


def wrapped_gaussian(frames: int, sigma: float) -> np.ndarray:
    """A length-`frames` circular kernel: the Gaussian summed over every wrap, normalised to 1."""
    offsets = np.arange(frames, dtype=np.float64)
    wraps = int(math.ceil(4.0 * sigma / frames)) + 1  # beyond 4 sigma the tail is < 1e-4
    kernel = sum(np.exp(-0.5 * ((offsets - m * frames) / sigma) ** 2) for m in range(-wraps, wraps + 1))
    return kernel / kernel.sum()


def smooth_walk(rnd: np.random.RandomState, frames: int, shape: tuple, sigma: float) -> np.ndarray:
    """[frames, *shape] float32: N(0, 1) draws smoothed along time by a circular Gaussian of
    `sigma` frames (0: no smoothing), rescaled to unit RMS."""
    walk = rnd.randn(frames, *shape)
    if sigma > 0 and frames > 1:
        kernel = np.fft.rfft(wrapped_gaussian(frames, sigma))
        spectrum = np.fft.rfft(walk, axis=0) * kernel.reshape((-1,) + (1,) * len(shape))
        walk = np.fft.irfft(spectrum, n=frames, axis=0)  # circular convolution: the walk loops
    walk /= np.sqrt(np.mean(np.square(walk)))
    return walk.astype(np.float32)


# -- style mixing ---------------------------------------------------------------------------

def named_rows(name: str, num_ws: int) -> range:
    """The StyleGAN paper's style groups by resolution: coarse 4²-8² (W rows 0-3), middle
    16²-32² (4-7), fine 64² and up (8 to the last). A model too small for fine rows (64 px
    and less has 10 rows, 32 px 8) gets its last half instead."""
    if name == "coarse":
        return range(0, min(4, num_ws))
    if name == "middle":
        return range(min(4, num_ws), min(8, num_ws))
    if name == "fine":
        return range(8, num_ws) if num_ws > 9 else range(num_ws // 2, num_ws)
    raise ValueError(f"unknown style group {name!r}")


def parse_rows(text: str, num_ws: int, option: str = "--rows") -> range:
    """"A-B" (inclusive, 0-based) or "A" → a range of W rows inside [0, num_ws)."""
    first, sep, last = text.strip().partition("-")
    try:
        a, b = int(first), int(last) if sep else int(first)
    except ValueError:
        raise BakeryError(f"{option}: expected rows \"A-B\" (whole numbers), got {text!r}") from None
    if not 0 <= a <= b < num_ws:
        raise BakeryError(f"{option}: rows {text!r} must satisfy 0 ≤ A ≤ B ≤ {num_ws - 1} "
                          f"(this model has {num_ws} W rows)")
    return range(a, b + 1)


def mix_rows(target_ws: np.ndarray, source_ws: np.ndarray, rows: range) -> np.ndarray:
    """target_ws [T, num_ws, w_dim] × source_ws [F, num_ws, w_dim] → [F, T, num_ws, w_dim]:
    every target with the `rows` of every source frame copied in, all other rows its own."""
    mixed = np.repeat(target_ws[None], len(source_ws), axis=0)
    mixed[:, :, rows.start:rows.stop] = source_ws[:, None, rows.start:rows.stop]
    return mixed


# -- circular interpolation -----------------------------------------------------------------

class Circle:
    """z(θ) = centre + radius·(cos 2πθ·u + sin 2πθ·v), θ in [0, 1): a loop around the seed's
    own latent (the centre is the z that `generate` draws for the seed), u and v orthonormal
    random directions, radius in units of sqrt(z_dim) (the typical length of a latent)."""

    def __init__(self, seed: int, z_dim: int, radius: float):
        rnd = np.random.RandomState(seed)
        self.centre = rnd.randn(1, z_dim)[0]  # the same draw as generator.seed_inputs
        u, v = np.random.RandomState([seed, 1]).randn(2, z_dim)
        u /= np.linalg.norm(u)
        v -= (v @ u) * u  # Gram-Schmidt: the circle is round, not an ellipse
        v /= np.linalg.norm(v)
        self.u, self.v = u, v
        self.radius = radius * math.sqrt(z_dim)

    def z(self, theta: np.ndarray) -> np.ndarray:
        angle = 2.0 * np.pi * np.asarray(theta, np.float64)[:, None]
        return (self.centre + self.radius * (np.cos(angle) * self.u + np.sin(angle) * self.v)).astype(np.float32)


def loop_distances(images: np.ndarray) -> np.ndarray:
    """RMS pixel difference (on 0..1) between each image and the next, the last and the first
    included: [P, H, W, C] → [P]. Equal RMS steps are equal MSE steps."""
    x = images.astype(np.float32) / 255.0
    return np.sqrt(np.mean(np.square(np.roll(x, -1, axis=0) - x), axis=(1, 2, 3)))


def equal_steps(theta: np.ndarray, distances: np.ndarray, count: int) -> np.ndarray:
    """Points θ_0 < … around the loop, `distances[j]` apart from θ_j to θ_{j+1} (cyclic) →
    `count` new points equally far apart along that measured path, the first kept at θ_0.
    The image distance is taken as linear in θ between neighbouring points."""
    knots = np.append(theta, theta[0] + 1.0)
    arc = np.concatenate([[0.0], np.cumsum(distances)])
    if arc[-1] <= 0:  # a constant image: any spacing is equal
        return theta[0] + np.arange(count) / count
    targets = np.arange(count) * (arc[-1] / count)
    return np.interp(targets, arc, knots)  # in [θ_0, θ_0 + 1): θ_0 stays 0, so below 1


def plan_circle(render_loop, frames: int, probes: int, passes: int) -> tuple[np.ndarray, np.ndarray]:
    """θ for each frame so that consecutive frames differ by about the same image-space MSE.

    A bounded search: `probes` points start evenly spaced in θ; each pass renders them
    (`render_loop(theta) → uint8 images`), measures the distance of every step, and moves the
    points to equal distances along the measured path; after at most `passes` passes (or
    once the steps agree within 5 %) the frames are placed the same way. Returns (θ per
    frame, the step distances the last pass measured)."""
    theta = np.arange(probes, dtype=np.float64) / probes
    for _ in range(passes):
        distances = loop_distances(render_loop(theta))
        if distances.max() <= 1.05 * distances.min():
            break
        theta = equal_steps(theta, distances, probes)
    else:
        distances = loop_distances(render_loop(theta))
    return equal_steps(theta, distances, frames), distances
