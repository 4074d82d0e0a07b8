"""The maths of the videos, in plain numpy: looping random walks, W-row style mixing and
equal-step circular paths. No TensorFlow here; rendering is the caller's job.

A walk is what the StyleGAN tutorial's video scripts drew: white Gaussian latents, one per
frame, smoothed over time by a Gaussian of `sigma` frames with wrap-around (so the last
frame leads smoothly into the first and the video loops), then scaled to unit RMS over the
whole walk so the latents stay as large as N(0, 1) draws.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from bakery.errors import BakeryError

log = logging.getLogger("bakery.video")


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


# -- the walk in blocks: memory flat whatever the length -------------------------------------

WHOLE_BYTES = 256 * 2 ** 20   # a walk whose draws fit in this is computed whole, as smooth_walk does
WINDOW_BYTES = 4 * 2 ** 30    # the most the walk may hold at once (a bound against absurd options)
BLOCK = 256                   # frames per block
TAIL_SIGMAS = 9.0             # taps past 9 sigma weigh < 3e-18 of the peak: below float64 resolution
MAX_CHECKPOINTS = 512         # random-generator states kept for seeking (2.5 kB each)


class Walk:
    """`smooth_walk(rnd, frames, shape, sigma)`, frame range by frame range: `frames(start, stop)`.

    A walk whose draws fit in WHOLE_BYTES is computed whole by smooth_walk, bit for bit as
    before. A longer one (`video grid --seconds 86400 --fps 30 --grid 8x8` of a z_dim 512 model
draws 2.6 M frames × 32768 values: 633 GiB whole in float64) is
    computed in blocks of BLOCK frames: each block is the circular Gaussian of the draws in a
    window reaching TAIL_SIGMAS sigma past both its ends (wrapping around the loop at the
    start and end), so the smoothing is the same sum with the taps that cannot change a
    float64 left out; the unit-RMS scale is summed block by block in a first pass. The
    draws come from the same random stream in the same order: positions are reached through
    generator states saved in that pass, never by holding the stream. The blocks agree with
    the whole walk to within one float32 rounding step (tests/test_video.py)."""

    def __init__(self, rnd: np.random.RandomState, frames: int, shape: tuple, sigma: float,
                 whole_bytes: int = WHOLE_BYTES, block: int = BLOCK, window_bytes: int = WINDOW_BYTES):
        self.count, self.shape, self.sigma = frames, tuple(shape), sigma
        self.width = int(np.prod(shape))
        self.radius = radius_of(frames, sigma)
        self.block = block
        how, needed = Walk.plan(frames, self.width, sigma, whole_bytes, block)
        if needed > max(window_bytes, 4 * whole_bytes):
            raise self.too_big(needed, window_bytes)
        if how == "whole":
            self.whole = smooth_walk(rnd, frames, shape, sigma)
            return
        self.whole = None
        log.info("video: a walk of %d frames × %d values, smoothed block by block (%.0f MiB at most); "
                 "a first pass over its draws sets its scale", frames, self.width, needed / 2 ** 20)
        self.taps = self.kernel_taps() if self.radius else None
        blocks = -(-frames // block)
        every = block * -(-blocks // MAX_CHECKPOINTS)  # frames between saved generator states
        self.draws = DrawStream(rnd, frames, self.shape, every, self.radius)
        self.cached = (None, None)
        self.scale = 1.0
        total = 0.0
        # Blocks whose window wraps back to the end come last, once the stream has passed the end.
        first = min(blocks, -(-self.radius // block))
        for b in list(range(first, blocks)) + list(range(first)):
            total += float(np.sum(np.square(self.smoothed(b))))
        self.scale = math.sqrt(total / (frames * self.width))

    @staticmethod
    def plan(frames: int, width: int, sigma: float, whole_bytes: int = WHOLE_BYTES,
             block: int = BLOCK) -> tuple[str, int]:
        """("whole" or "blocks", the bytes that way holds at most)."""
        radius = radius_of(frames, sigma)
        if frames * width * 8 <= whole_bytes or frames <= 2 * radius + block:
            return "whole", 4 * frames * width * 8  # the draws, their spectrum, the result, a square
        return "blocks", Walk.blocks_bytes(radius, block, width)

    @staticmethod
    def blocks_bytes(radius: int, block: int, width: int) -> int:
        """What the block-by-block walk holds at most: the first and last `radius` frames of
        draws, the last window and the next one, a block and its float32 copy, FFT slabs."""
        return (2 * radius + 2 * (block + 2 * radius) + 2 * block) * width * 8 + 2 ** 27

    def too_big(self, needed: int, budget: int) -> BakeryError:
        return BakeryError(f"the walk's smoothing (a Gaussian of {self.sigma:g} frames) over {self.count} frames "
                           f"of {self.width} latent values needs {needed / 2 ** 30:.1f} GiB of memory, more than "
                           f"{budget / 2 ** 30:.0f} GiB: lower --smoothing, --fps or the grid size")

    def kernel_taps(self) -> np.ndarray:
        """wrapped_gaussian's values at offsets -R..R (the rest weighs nothing a float64 holds)."""
        offsets = np.arange(-self.radius, self.radius + 1, dtype=np.float64)
        wraps = int(math.ceil(4.0 * self.sigma / self.count)) + 1
        taps = sum(np.exp(-0.5 * ((offsets - m * self.count) / self.sigma) ** 2) for m in range(-wraps, wraps + 1))
        return taps / taps.sum()

    def smoothed(self, b: int) -> np.ndarray:
        """Block b before the RMS scale: float64 [n, width]."""
        start, stop = b * self.block, min((b + 1) * self.block, self.count)
        r = self.radius
        if not r:
            return self.draws.get(start, stop)
        lo, hi = start - r, stop + r
        parts = []
        if lo < 0:
            parts.append(self.draws.tail[lo:])  # the loop's last frames lead into its first
        parts.append(self.draws.get(max(lo, 0), min(hi, self.count)))
        if hi > self.count:
            parts.append(self.draws.head[:hi - self.count])
        return convolve_valid(parts, self.taps)

    def frames(self, start: int, stop: int) -> np.ndarray:
        """float32 [stop - start, *shape]: the walk's frames start..stop-1."""
        if self.whole is not None:
            return self.whole[start:stop]
        out = []
        for b in range(start // self.block, (stop - 1) // self.block + 1):
            if self.cached[0] != b:
                self.cached = (b, (self.smoothed(b) / self.scale).astype(np.float32))
            first = b * self.block
            out.append(self.cached[1][max(start - first, 0):stop - first])
        return np.concatenate(out).reshape((stop - start,) + self.shape)


def radius_of(frames: int, sigma: float) -> int:
    """How many frames on each side a smoothed frame depends on (0: no smoothing)."""
    return int(math.ceil(TAIL_SIGMAS * sigma)) if sigma > 0 and frames > 1 else 0


def convolve_valid(pieces: list[np.ndarray], taps: np.ndarray) -> np.ndarray:
    """The rows of window ⊛ taps (along axis 0) that lie wholly inside the window (the pieces
    one after another), by FFT, a slab of columns at a time so the spectra stay small and
    the window is never copied whole."""
    n, k, width = sum(len(p) for p in pieces), len(taps), pieces[0].shape[1]
    size = fast_length(n + k - 1)
    spectrum = np.fft.rfft(taps, n=size)[:, None]
    cols = max(1, 2 ** 21 // size)
    out = np.empty((n - k + 1, width))
    for c in range(0, width, cols):
        slab = np.concatenate([p[:, c:c + cols] for p in pieces])
        full = np.fft.irfft(np.fft.rfft(slab, n=size, axis=0) * spectrum, n=size, axis=0)
        out[:, c:c + cols] = full[k - 1:n]
    return out


def fast_length(n: int) -> int:
    """The least 2^a·3^b·5^c ≥ n: an FFT length with no large prime factor (those are slow)."""
    best = 1 << max(0, (n - 1).bit_length())
    fives = 1
    while fives < best:
        threes = fives
        while threes < best:
            size = threes
            while size < n:
                size *= 2
            best = min(best, size)
            threes *= 3
        fives *= 5
    return best


class DrawStream:
    """The walk's N(0, 1) draws, `get(a, b)` → float64 [b - a, width], from one RandomState in
    its one order. Reading on from where the last read ended just draws on; anything else
    restarts from the nearest saved generator state at or before `a`. The first pass through
    saves a state every `every` frames and keeps the first and last `keep` frames (the
    wrap-around of the first and last blocks)."""

    def __init__(self, rnd: np.random.RandomState, frames: int, shape: tuple, every: int, keep: int):
        self.rnd, self.count, self.shape, self.every, self.keep = rnd, frames, shape, every, keep
        self.width = int(np.prod(shape))
        self.pos = 0
        self.states = {0: rnd.get_state()}
        self.head = self.draw(keep)  # [0, keep): what the last blocks wrap around into
        self.tail = np.empty((0, self.width))  # [frames - keep, frames): kept when first read
        rnd.set_state(self.states[0])
        self.pos = 0
        self.last = (0, 0, np.empty((0, self.width)))

    def draw(self, n: int) -> np.ndarray:
        """n frames of draws from the current position, saving states at multiples of `every`."""
        out = np.empty((n, self.width))
        done = 0
        while done < n:
            step = min(n - done, self.every - self.pos % self.every)
            out[done:done + step] = self.rnd.randn(step, *self.shape).reshape(step, self.width)
            done += step
            self.pos += step
            if self.pos % self.every == 0 and self.pos not in self.states and self.pos < self.count:
                self.states[self.pos] = self.rnd.get_state()
        return out

    def seek(self, a: int) -> None:
        if not self.pos <= a < self.pos + self.every:
            at = max(p for p in self.states if p <= a)
            self.rnd.set_state(self.states[at])
            self.pos = at
        skip_rows = max(1, 2 ** 20 // self.width)
        while self.pos < a:
            self.draw(min(a - self.pos, skip_rows))

    def get(self, a: int, b: int) -> np.ndarray:
        la, lb, last = self.last
        if la <= a <= lb and b >= lb and self.pos == lb:
            out = np.concatenate([last[a - la:], self.draw(b - lb)])
        elif la <= a and b <= lb:
            return last[a - la:b - la]  # inside the last read: it stays the last read
        else:
            self.seek(a)
            out = self.draw(b - a)
        if self.keep and b == self.count and a <= self.count - self.keep:
            self.tail = out[len(out) - self.keep:].copy()
        self.last = (a, b, out)
        return out


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
