"""stylegan2-ada-pytorch and StyleGAN3 snapshots' `D` → the TF2 DStyleGAN2.

Both repositories' `Discriminator` (StyleGAN3 snapshots carry the StyleGAN 2 one) is read from
the plain-data module tree of torch_pickle.py. Settings come from each module's own state,
never from the init kwargs alone (the stylegan3 repository's defaults, conv_clamp=256, are not
written into them): every block's `architecture`, every layer's `conv_clamp`, `activation` and
gains, `b4.mbstd`'s group size and channels, and `mapping` for a conditional model. Weights
are stored [out, in, kh, kw] and applied unflipped; every tensor must be used and every
shape agree with its neighbours, or the error names the tensor.
"""

from __future__ import annotations

import math

import numpy as np

from bakery.images.d_stylegan2 import ARCHITECTURES, RESNET_GAIN, DStyleGAN2
from bakery.images.discriminator import check_channels, conv_layer, dense_layer, nchw_flatten_rows
from bakery.images.generator import log2_resolution
from bakery.images.pickle_loader import CheckpointError
from bakery.images.stylegan2_pytorch import _Reader, _attr, _child, _expect_class
from bakery.images.torch_pickle import TorchModule

SQRT2 = math.sqrt(2.0)
MAX_GROUP = 1 << 16


class _DReader(_Reader):
    def check_all_used(self) -> None:
        unused = sorted(set(self.tensors) - self.used)
        if unused:
            raise CheckpointError(f"{self.source}: D has tensors this discriminator does not know: "
                                  f"{', '.join(unused[:3])}{' …' if len(unused) > 3 else ''}")


def _number(module: TorchModule, name: str, where: str, source: str, optional: bool = False):
    value = _attr(module, name, where, source, required=not optional)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or abs(value) > 1e9:
        raise CheckpointError(f"{source}: {where}.{name} = {str(value)[:40]!r} is not a finite number")
    return float(value)


def _conv(rd: _DReader, block: TorchModule, path: str, name: str, cin: int, cout: int, k: int, *,
          down: bool, gain: float = 1.0, bias: bool = True):
    """Conv2dLayer → discriminator.conv_layer (weight HWIO × weight_gain, gains, clamp · gain)."""
    src, where = rd.source, f"{path}.{name}"
    layer = _child(block, name, "Conv2dLayer", path, src)
    activation = _attr(layer, "activation", where, src)
    if activation not in ("lrelu", "linear"):
        raise CheckpointError(f"{src}: {where}: activation {activation!r} is not supported (lrelu or linear)")
    if (int(_attr(layer, "down", where, src)), int(_attr(layer, "up", where, src))) != (2 if down else 1, 1):
        raise CheckpointError(f"{src}: {where}: up/down {layer.attrs.get('up')}/{layer.attrs.get('down')} is not "
                              f"what a discriminator {'down-sampling ' if down else ''}layer uses")
    act_gain = _number(layer, "act_gain", where, src)
    if not math.isclose(act_gain, SQRT2 if activation == "lrelu" else 1.0, rel_tol=1e-6):
        raise CheckpointError(f"{src}: {where}: act_gain {act_gain} is not NVIDIA's for {activation}")
    weight = rd.take(f"{where}.weight", (cout, cin, k, k)).transpose(2, 3, 1, 0)
    weight = weight * _number(layer, "weight_gain", where, src)
    b = rd.take(f"{where}.bias", (cout,)) if bias else None
    if not bias and "bias" in layer.params:
        raise CheckpointError(f"{src}: {where}: unexpected bias")
    rd.take(f"{where}.resample_filter", (4, 4))
    clamp = _number(layer, "conv_clamp", where, src, optional=True)
    return conv_layer(weight, b, down=down, act=activation == "lrelu", gain=gain,
                      clamp=None if clamp is None else clamp * gain)


def _dense(rd: _DReader, module: TorchModule, path: str, fan_in: int, fan_out: int, activation: str,
           nchw: int | None = None):
    """FullyConnectedLayer → dense_layer with its gains folded in; `nchw` = C of an NCHW-flattened
    [C, 4, 4] input, whose rows are put in the NHWC flatten order used here."""
    src = rd.source
    _expect_class(module, "FullyConnectedLayer", path, src)
    if _attr(module, "activation", path, src) != activation:
        raise CheckpointError(f"{src}: {path}: activation {module.attrs.get('activation')!r} is not supported "
                              f"(only {activation!r})")
    weight = rd.take(f"{path}.weight", (fan_out, fan_in)).T * _number(module, "weight_gain", path, src)
    if nchw is not None:
        weight = nchw_flatten_rows(weight, nchw, 4)
    bias = rd.take(f"{path}.bias", (fan_out,)) * _number(module, "bias_gain", path, src) \
        if "bias" in module.params else None
    return dense_layer(weight, bias, act=activation == "lrelu")


def _out_channels(rd: _DReader, name: str) -> int:
    value = rd.tensors.get(name)
    if value is None or value.ndim < 1:
        raise CheckpointError(f"{rd.source}: tensor {name!r} is missing")
    return int(value.shape[0])


def build_discriminator(d: TorchModule, source: str) -> DStyleGAN2:
    """A PyTorch `Discriminator` module → DStyleGAN2 scoring as NVIDIA's D(img, c, force_fp32=True)."""
    _expect_class(d, "Discriminator", "D", source)
    net = DStyleGAN2()
    net.kind = "StyleGAN 2 discriminator (PyTorch)"
    net.resolution = int(_number(d, "img_resolution", "D", source))
    net.channels = int(_number(d, "img_channels", "D", source))
    net.c_dim = int(_number(d, "c_dim", "D", source))
    if not 1 <= net.channels <= 4 or net.c_dim < 0:
        raise CheckpointError(f"{source}: D: img_channels={net.channels}, c_dim={net.c_dim} are not supported")
    res_log2 = log2_resolution(net.resolution, f"{source}: D")
    rd = _DReader(d, source)
    resolutions = [2 ** r for r in range(res_log2, 2, -1)]
    blocks = [_child(d, f"b{r}", "DiscriminatorBlock", "D", source) for r in resolutions]
    epilogue = _child(d, "b4", "DiscriminatorEpilogue", "D", source)
    architectures = {_attr(m, "architecture", "D block", source) for m in blocks + [epilogue]}
    if len(architectures) != 1 or not architectures <= set(ARCHITECTURES):
        raise CheckpointError(f"{source}: D architecture {sorted(map(str, architectures))} is not supported "
                              f"(one of {', '.join(ARCHITECTURES)})")
    net.architecture = architectures.pop()
    fir = rd.take(f"b{net.resolution}.resample_filter", (4, 4))
    for name, value in rd.tensors.items():
        if name.endswith("resample_filter") and not np.array_equal(value, rd.tensors[f"b{net.resolution}.resample_filter"]):
            raise CheckpointError(f"{source}: {name} differs from the first block's resample filter")
    net.fir = fir[::-1, ::-1].astype(np.float32)  # upfirdn2d convolves (flips); conv2d does not
    _read_blocks(net, rd, blocks, resolutions)
    _read_epilogue(net, rd, d, epilogue)
    rd.check_all_used()
    return net


def _read_blocks(net: DStyleGAN2, rd: _DReader, blocks: list, resolutions: list) -> None:
    src, resnet = rd.source, net.architecture == "resnet"
    net.blocks, cin = [], 0
    for block, res in zip(blocks, resolutions):
        path = f"b{res}"
        rd.take(f"{path}.resample_filter", (4, 4))
        tmp = _out_channels(rd, f"{path}.conv0.weight")
        out = _out_channels(rd, f"{path}.conv1.weight")
        has_rgb = cin == 0 or net.architecture == "skip"
        if has_rgb != ("fromrgb" in block.children):
            raise CheckpointError(f"{src}: {path}: FromRGB layer {'missing' if has_rgb else 'unexpected'} "
                                  f"for architecture {net.architecture!r}")
        if cin and cin != tmp:
            raise CheckpointError(f"{src}: {path}.conv0 takes {tmp} channels, the block before gives {cin}")
        if resnet != ("skip" in block.children):
            raise CheckpointError(f"{src}: {path}: skip layer {'missing' if resnet else 'unexpected'} "
                                  f"for architecture {net.architecture!r}")
        net.blocks.append(dict(
            fromrgb=_conv(rd, block, path, "fromrgb", net.channels, tmp, 1, down=False) if has_rgb else None,
            conv0=_conv(rd, block, path, "conv0", tmp, tmp, 3, down=False),
            conv1=_conv(rd, block, path, "conv1", tmp, out, 3, down=True, gain=RESNET_GAIN if resnet else 1.0),
            skip=_conv(rd, block, path, "skip", tmp, out, 1, down=True, gain=RESNET_GAIN, bias=False)
            if resnet else None))
        cin = out


def _read_epilogue(net: DStyleGAN2, rd: _DReader, d: TorchModule, ep: TorchModule) -> None:
    src = rd.source
    ch = _out_channels(rd, "b4.conv.weight")
    if net.blocks and ch != _out_channels(rd, "b8.conv1.weight"):
        raise CheckpointError(f"{src}: b4.conv gives {ch} channels, b8 gives {_out_channels(rd, 'b8.conv1.weight')}")
    if "mbstd" in ep.children:
        mbstd = _child(ep, "mbstd", "MinibatchStdLayer", "D.b4", src)
        group = _number(mbstd, "group_size", "D.b4.mbstd", src, optional=True)
        net.mbstd_group_size = None if group is None else int(group)
        net.mbstd_num_channels = int(_number(mbstd, "num_channels", "D.b4.mbstd", src))
        if net.mbstd_num_channels < 1 or (group is not None and not 1 <= group <= MAX_GROUP):
            raise CheckpointError(f"{src}: D.b4.mbstd: group_size={group}, num_channels="
                                  f"{net.mbstd_num_channels} are not supported")
    else:
        net.mbstd_num_channels = 0
    check_channels(ch, net.mbstd_num_channels, f"{src}: D.b4")
    has_rgb = net.architecture == "skip"
    if has_rgb != ("fromrgb" in ep.children):
        raise CheckpointError(f"{src}: b4: FromRGB layer {'missing' if has_rgb else 'unexpected'}")
    net.cmap_dim = int(_number(ep, "cmap_dim", "D.b4", src))
    if (net.cmap_dim > 0) != (net.c_dim > 0):
        raise CheckpointError(f"{src}: D.b4 cmap_dim={net.cmap_dim} does not fit c_dim={net.c_dim}")
    fc = _dense(rd, _child(ep, "fc", "FullyConnectedLayer", "D.b4", src), "b4.fc", ch * 16, ch, "lrelu", nchw=ch)
    net.epilogue = dict(
        fromrgb=_conv(rd, ep, "b4", "fromrgb", net.channels, ch, 1, down=False) if has_rgb else None,
        conv=_conv(rd, ep, "b4", "conv", ch + net.mbstd_num_channels, ch, 3, down=False),
        fc=fc,
        out=_dense(rd, _child(ep, "out", "FullyConnectedLayer", "D.b4", src), "b4.out", ch,
                   max(net.cmap_dim, 1), "linear"))
    net.mapping = _read_mapping(net, rd, d) if net.c_dim > 0 else None
    if net.c_dim == 0 and "mapping" in d.children:
        raise CheckpointError(f"{src}: D has a class mapping but c_dim is 0")


def _read_mapping(net: DStyleGAN2, rd: _DReader, d: TorchModule) -> list:
    """NVIDIA's MappingNetwork(z_dim=0, c_dim, w_dim=cmap_dim): embed, then num_layers dense."""
    src = rd.source
    m = _child(d, "mapping", "MappingNetwork", "D", src)
    if int(_number(m, "z_dim", "D.mapping", src)) != 0 or int(_number(m, "c_dim", "D.mapping", src)) != net.c_dim \
            or int(_number(m, "w_dim", "D.mapping", src)) != net.cmap_dim:
        raise CheckpointError(f"{src}: D.mapping does not map c_dim={net.c_dim} to cmap_dim={net.cmap_dim}")
    features = _out_channels(rd, "mapping.embed.weight")
    layers = [_dense(rd, _child(m, "embed", "FullyConnectedLayer", "D.mapping", src), "mapping.embed",
                     net.c_dim, features, "linear")]
    n_layers, fan_in = int(_number(m, "num_layers", "D.mapping", src)), features
    for i in range(n_layers):
        fan_out = net.cmap_dim if i == n_layers - 1 else _out_channels(rd, f"mapping.fc{i}.weight")
        layers.append(_dense(rd, _child(m, f"fc{i}", "FullyConnectedLayer", "D.mapping", src),
                             f"mapping.fc{i}", fan_in, fan_out, "lrelu"))
        fan_in = fan_out
    return layers

