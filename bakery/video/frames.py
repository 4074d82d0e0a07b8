"""The three kinds of video as frame producers: each knows its frame count and size and
renders any range of frames [start, stop) on its own, so chunks can be rendered in any
order (a resumed run renders only the missing ones) and always come out the same.

Rendering goes through the generator's two halves (Renderer.map: z → truncated W,
Renderer.synthesize: W → image), in batches padded to one fixed size so TensorFlow traces
one graph per half; padding never changes a picture (layers.per_image). Noise is fixed for
the whole video (a frame-to-frame change of noise would flicker): the checkpoint's stored
maps in "const" mode, or drawn per seed as `generate` draws them in "seeded" mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from bakery.images.generator import class_labels, seed_inputs
from bakery.video.latents import Circle, Walk, mix_rows, plan_circle

CIRCLE_PROBES = 96  # points the circular plan measures (fewer if the video has fewer frames)
CIRCLE_PASSES = 3   # bound on the plan's render-measure-respace passes


@dataclass(frozen=True)
class Look:
    """What every kind shares: seed, truncation, noise, cell size, batch, frames."""

    seed: int
    psi: float
    noise: str
    size: int
    batch: int
    frames: int
    fps: int
    class_index: int | None = None  # the class of every image, for a class-conditional model


def padded(fn, batch: int, *arrays):
    """fn over the arrays in slices of `batch` rows, the last slice padded by repeating its
    last row (so one graph serves every call), results concatenated and unpadded."""
    n = len(arrays[0])
    out = []
    for i in range(0, n, batch):
        part = [a[i:i + batch] for a in arrays]
        short = batch - len(part[0])
        if short:
            part = [np.concatenate([a, np.repeat(a[-1:], short, axis=0)]) for a in part]
        out.append(fn(*part)[:batch - short])
    return np.concatenate(out)


def resize_cells(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, r, r, C] → [N, size, size, 3] (Lanczos downscale, grey repeated to RGB)."""
    from PIL import Image

    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    if images.shape[1] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(img).resize((size, size), Image.LANCZOS)) for img in images])


def tile(cells: np.ndarray, cols: int) -> np.ndarray:
    """[rows·cols, s, s, 3] → one [rows·s, cols·s, 3] frame, row-major."""
    n, s = len(cells), cells.shape[1]
    rows = n // cols
    return cells.reshape(rows, cols, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(rows * s, cols * s, 3)


class Kind:
    """A video: `width`, `height`, `count` frames; `render(start, stop)` yields them."""

    images_per_frame = 1
    cols = rows = 1

    def __init__(self, renderer, look: Look):
        self.renderer, self.gen, self.look = renderer, renderer.gen, look
        self.count = look.frames
        per_call = self.images_per_frame * max(1, look.batch // self.images_per_frame)
        self.batch = per_call  # whole frames per synthesis call
        self.label = class_labels(self.gen, [look.class_index])  # one-hot [1, c_dim]; [1, 0] if unconditional

    @property
    def width(self) -> int:
        return self.cols * self.look.size

    @property
    def height(self) -> int:
        return self.rows * self.look.size

    def noise_of(self, seed: int) -> list[np.ndarray]:
        return seed_inputs(self.gen, seed, self.look.noise)[1]

    def map(self, z: np.ndarray) -> np.ndarray:
        psi = np.full(len(z), self.look.psi, np.float32)
        return padded(self.renderer.map, self.batch, z, psi, np.repeat(self.label, len(z), axis=0))

    def synthesize(self, ws: np.ndarray, noise: list[list[np.ndarray]]) -> np.ndarray:
        """ws [N, num_ws, w_dim] with one noise set per image → uint8 [N, r, r, C]."""
        stacked = [np.stack([n[k] for n in noise]) for k in range(len(self.gen.noise_shapes))]
        return padded(lambda w, *ns: self.renderer.synthesize(w, list(ns))["uint8"], self.batch, ws, *stacked)

    def render(self, start: int, stop: int) -> Iterator[np.ndarray]:
        step = max(1, self.batch // self.images_per_frame)
        for first in range(start, stop, step):
            yield from self.render_frames(first, min(first + step, stop))

    def render_frames(self, start: int, stop: int) -> list[np.ndarray]:
        raise NotImplementedError


class GridWalk(Kind):
    """`video grid`: per cell a looping smoothed random walk through z."""

    def __init__(self, renderer, look: Look, cols: int, rows: int, smoothing: float):
        self.cols, self.rows = cols, rows
        self.images_per_frame = cols * rows
        super().__init__(renderer, look)
        rnd = np.random.RandomState(look.seed)
        self.z = Walk(rnd, look.frames, (self.images_per_frame, self.gen.z_dim), smoothing * look.fps)
        self.cell_noise = [self.noise_of(look.seed + c) for c in range(self.images_per_frame)]

    def ws(self, start: int, stop: int) -> np.ndarray:
        """[F, cells, num_ws, w_dim] for frames start..stop-1."""
        z = self.z.frames(start, stop).reshape(-1, self.gen.z_dim)
        return self.map(z).reshape(stop - start, self.images_per_frame, self.gen.num_ws, self.gen.w_dim)

    def render_frames(self, start, stop):
        ws = self.ws(start, stop).reshape(-1, self.gen.num_ws, self.gen.w_dim)
        images = resize_cells(self.synthesize(ws, self.cell_noise * (stop - start)), self.look.size)
        per = self.images_per_frame
        return [tile(images[i:i + per], self.cols) for i in range(0, len(images), per)]


class StyleMix(Kind):
    """`video coarse|fine`: fixed targets whose W `rows` come from a walking source.

    Layout as in the tutorial's script: top row a blank cell then the targets; bottom row
    the walking source, then under each target the target with the source's rows."""

    rows = 2

    def __init__(self, renderer, look: Look, targets: list[int], rows: range, smoothing: float):
        self.targets, self.mixed_rows = targets, rows
        self.cols = self.images_per_frame = len(targets) + 1
        super().__init__(renderer, look)
        self.source_z = Walk(np.random.RandomState(look.seed), look.frames, (self.gen.z_dim,), smoothing * look.fps)
        self.source_noise = self.noise_of(look.seed)
        self.target_noise = [self.noise_of(t) for t in targets]
        self.target_ws = self.map(np.stack([seed_inputs(self.gen, t, "const")[0] for t in targets]))
        targets_img = resize_cells(self.synthesize(self.target_ws, self.target_noise), look.size)
        blank = np.zeros_like(targets_img[:1])
        self.top_row = np.concatenate([blank, targets_img])

    def ws(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(source ws [F, num_ws, w_dim], mixed ws [F, targets, num_ws, w_dim])."""
        source = self.map(self.source_z.frames(start, stop))
        return source, mix_rows(self.target_ws, source, self.mixed_rows)

    def render_frames(self, start, stop):
        source, mixed = self.ws(start, stop)
        ws = np.concatenate([source[:, None], mixed], axis=1).reshape(-1, self.gen.num_ws, self.gen.w_dim)
        noise = ([self.source_noise] + self.target_noise) * (stop - start)
        images = resize_cells(self.synthesize(ws, noise), self.look.size)
        per = self.images_per_frame
        return [tile(np.concatenate([self.top_row, images[i:i + per]]), self.cols)
                for i in range(0, len(images), per)]


class CircularWalk(Kind):
    """`video circular`: once around a circle in z centred on the seed's latent, with the
    steps planned so that consecutive frames differ by about the same MSE."""

    def __init__(self, renderer, look: Look, radius: float):
        super().__init__(renderer, look)
        self.circle = Circle(look.seed, self.gen.z_dim, radius)
        self.noise = self.noise_of(look.seed)
        probes = min(look.frames, CIRCLE_PROBES)
        self.theta, self.probe_distances = plan_circle(self.images_at, look.frames, probes, CIRCLE_PASSES)

    def images_at(self, theta: np.ndarray) -> np.ndarray:
        return self.synthesize(self.map(self.circle.z(theta)), [self.noise] * len(theta))

    def render_frames(self, start, stop):
        return list(resize_cells(self.images_at(self.theta[start:stop]), self.look.size))
