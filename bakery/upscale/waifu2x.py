"""waifu2x upconv_7 (anime-style-art, 2x): what every engine shares (bakery.upscale.engines picks one).

The network is six valid 3x3 convolutions with leaky ReLU (3→16→32→64→128→128→256 channels)
and a 4x4 stride-2 transposed convolution to 3 channels whose output is cropped by 3 px a side.
An input padded by 7 px a side therefore yields exactly twice the unpadded size, and every
output pixel depends on at most 7 input pixels around it. So:

* the picture is padded by edge replication (as waifu2x-ncnn-vulkan does), and
* tiles are cut with 7 px of their real neighbourhood, which makes tiling exact: a tiled run
  computes the same numbers as a whole-picture run, only in different pieces.

Pixels go in as ``p * (1/255)`` in float32 and come out as ``clamp(floor(y * 255 + 0.5), 0, 255)``,
also in float32. Alpha never enters the network: it is enlarged with the reference tool's
bicubic filter (Keys, a = -0.75).

All of that lives here, in `Waifu2x`; an engine only supplies `forward` (padded float32 tiles →
raw network output): `ncnn_engine.NcnnWaifu2x` runs the .param/.bin files in ncnn itself (the
default), `tf_engine.TensorflowWaifu2x` runs the same weights as a TensorFlow 2 graph. Each
engine's library is imported only when that engine is built (bakery/upscale/engines.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from bakery.upscale.modes import join_modes, split_modes
from bakery.upscale.ncnn_weights import Network, load_waifu2x

BICUBIC_A = -0.75  # waifu2x-ncnn-vulkan resizes alpha with ncnn's bicubic, which uses a = -0.75


# --- pre/post-processing --------------------------------------------------------------------


def to_network_input(rgb: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 → float32 in [0, 1], computed as the reference does (p * (1/255))."""
    return rgb.astype(np.float32) * np.float32(1.0 / 255.0)


def to_uint8(raw: np.ndarray) -> np.ndarray:
    """Network output → uint8: round half up in float32, then saturate."""
    scaled = np.floor(raw.astype(np.float32) * np.float32(255.0) + np.float32(0.5))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def keys_cubic(distance: np.ndarray, a: float = BICUBIC_A) -> np.ndarray:
    d = np.abs(distance)
    near = (a + 2) * d**3 - (a + 3) * d**2 + 1
    far = a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
    return np.where(d < 1, near, np.where(d < 2, far, 0.0))


def _bicubic_2x_axis(values: np.ndarray, axis: int) -> np.ndarray:
    """Double one axis with half-pixel centres and clamped edges (output 2i sits at i - 1/4)."""
    n = values.shape[axis]
    out_shape = list(values.shape)
    out_shape[axis] = 2 * n
    out = np.zeros(out_shape, np.float32)
    for phase, first in ((0, -2), (1, -1)):  # output 2i uses pixels i-2..i+1, 2i+1 uses i-1..i+2
        centre = (phase + 0.5) / 2 - 0.5  # source coordinate of output 2i+phase, minus i
        acc = np.zeros(values.shape, np.float32)
        for offset in range(first, first + 4):
            weight = np.float32(keys_cubic(np.array(offset - centre)))
            index = np.clip(np.arange(n) + offset, 0, n - 1)
            acc += weight * np.take(values, index, axis=axis)
        sl = [slice(None)] * values.ndim
        sl[axis] = slice(phase, None, 2)
        out[tuple(sl)] = acc
    return out


def bicubic_2x(channel: np.ndarray) -> np.ndarray:
    """uint8 HxW → uint8 2Hx2W with Keys bicubic (a = -0.75), as waifu2x-ncnn-vulkan enlarges alpha."""
    up = _bicubic_2x_axis(_bicubic_2x_axis(channel.astype(np.float32), 0), 1)
    return np.clip(np.floor(up + np.float32(0.5)), 0, 255).astype(np.uint8)


def tile_origins(size: int, tile: int) -> list[int]:
    """Starts of equal tiles covering [0, size); the last one is shifted back to end at `size`.

    Equal tiles share one traced graph and can be batched; the overlap is computed twice
    but, the tiles being exact, both computations agree.
    """
    tile = min(tile, size)
    starts = list(range(0, size - tile + 1, tile))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


# --- the network ----------------------------------------------------------------------------


@dataclass
class _Tile:
    image: int  # index of the image in the batch
    y: int
    x: int


class Waifu2x:
    """upconv_7 anime 2x for one noise level; `upscale_arrays` batches tiles across images.

    Subclasses set `engine` and implement `forward`; tiling, padding, rounding and alpha are here,
    so every engine shares them to the line.
    """

    engine = ""

    def __init__(self, noise: str = "none", tile_size: int = 512, batch_size: int = 1,
                 network: Network | None = None):
        self.network = network or load_waifu2x(noise)
        self.context = self.network.context
        self.scale = self.network.scale
        self.tile_size = tile_size
        self.batch_size = batch_size

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 NHWC tiles (already padded by `context`) → raw float32 N x 2h x 2w x 3 output."""
        raise NotImplementedError

    def raw_arrays(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """uint8 HxWx3 pictures → raw float32 2Hx2Wx3 outputs, tile by tile, batched by tile shape."""
        c, s = self.context, self.scale
        padded = [np.pad(to_network_input(img), ((c, c), (c, c), (0, 0)), mode="edge") for img in images]
        outputs = [np.empty((s * img.shape[0], s * img.shape[1], 3), np.float32) for img in images]
        groups: dict[tuple[int, int], list[_Tile]] = {}
        for index, img in enumerate(images):
            h, w = img.shape[:2]
            th, tw = min(self.tile_size, h), min(self.tile_size, w)
            for y in tile_origins(h, th):
                for x in tile_origins(w, tw):
                    groups.setdefault((th, tw), []).append(_Tile(index, y, x))
        for (th, tw), tiles in groups.items():
            for start in range(0, len(tiles), self.batch_size):
                chunk = tiles[start:start + self.batch_size]
                batch = np.stack([padded[t.image][t.y:t.y + th + 2 * c, t.x:t.x + tw + 2 * c] for t in chunk])
                result = self.forward(batch)
                for t, out in zip(chunk, result):
                    outputs[t.image][s * t.y:s * (t.y + th), s * t.x:s * (t.x + tw)] = out
        return outputs

    def upscale_arrays(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [to_uint8(raw) for raw in self.raw_arrays(images)]

    def upscale_images(self, images: list[Image.Image]) -> list[Image.Image]:
        """Pillow images of any mode → 2x RGB or RGBA images (alpha by bicubic, not the network)."""
        split = [split_modes(img) for img in images]
        rgbs = self.upscale_arrays([rgb for rgb, _ in split])
        return [join_modes(rgb, None if alpha is None else bicubic_2x(alpha))
                for rgb, (_, alpha) in zip(rgbs, split)]

    def upscale(self, img: Image.Image) -> Image.Image:
        return self.upscale_images([img])[0]
