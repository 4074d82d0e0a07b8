"""stylegan2-ada-pytorch generators (and the stylegan3 repository's StyleGAN 2) → the TF2 StyleGAN2.

The inverse of NVIDIA's legacy.py TF1→PyTorch conversion, read from the plain-data module tree
of torch_pickle.py. Differences from a TF1 pickle that this mapping takes care of:

* weights are stored [out, in, kh, kw]; a TF1 up-convolution kernel is the PyTorch one
  flipped spatially (legacy.py converts `tf_w[::-1, ::-1]`), a stride-1 one is not;
* the modulated convolutions carry no weight gain (the demodulation absorbs it), the fully
  connected layers keep theirs in the module state (`weight_gain`, `bias_gain`), and the
  style's "+1" is stored inside `affine.bias`;
* the ToRGB layer scales the style by its `weight_gain` (folded into the 1×1 weight here);
* `conv_clamp` clips every layer's output; architectures `orig` and `resnet` besides `skip`;
* class-conditional mapping (`c_dim > 0`): the one-hot label goes through the `embed` layer.

Hyperparameters come from each module's own attributes, which NVIDIA's code sets from the
constructor arguments (the generator's init kwargs are nested in ada-pytorch and flat in the
stylegan3 repository, with defaults not written down, so the attributes are the safe source).
Every tensor of the generator must be used: an unknown one means a variant this code cannot
promise the right picture for, and is an error.
"""

from __future__ import annotations

import math

import numpy as np

from bakery.images.generator import log2_resolution
from bakery.images.layers import tf
from bakery.images.pickle_loader import CheckpointError
from bakery.images.safe_pickle import describe
from bakery.images.stylegan2 import StyleGAN2
from bakery.images.torch_pickle import TorchModule

ARCHITECTURES = ("orig", "skip", "resnet")
RESNET_GAIN = math.sqrt(0.5)  # SynthesisBlock: skip(x, gain=√½) + conv1(…, gain=√½)


class _Reader:
    """Takes tensors out of a module tree by their state_dict path, checking shape and finiteness,
    and remembers which it took so that leftovers can be reported."""

    def __init__(self, root: TorchModule, source: str):
        self.tensors, self.source, self.used = root.named_tensors(), source, set()

    def take(self, name: str, shape: tuple) -> np.ndarray:
        if name not in self.tensors:
            raise CheckpointError(f"{self.source}: tensor {name!r} is missing")
        value = self.tensors[name]
        if tuple(value.shape) != tuple(shape):
            raise CheckpointError(f"{self.source}: tensor {name!r} has shape {list(value.shape)}, "
                                  f"expected {list(shape)}")
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{self.source}: tensor {name!r} holds NaN or infinite values")
        self.used.add(name)
        return value.astype(np.float64)

    def check_all_used(self) -> None:
        unused = sorted(set(self.tensors) - self.used)
        if unused:
            raise CheckpointError(f"{self.source}: the generator has tensors this StyleGAN 2 does not know: "
                                  f"{', '.join(unused[:3])}{' …' if len(unused) > 3 else ''}")


def _attr(module: TorchModule, name: str, where: str, source: str, default=None, required=True):
    if name in module.attrs:
        return module.attrs[name]
    if required and default is None:
        raise CheckpointError(f"{source}: {where} ({module.class_name}) lacks the attribute {name!r}")
    return default


def _expect_class(module: TorchModule, wanted: str, where: str, source: str) -> TorchModule:
    if module.class_name != wanted:
        raise CheckpointError(f"{source}: {where} is a {module.class_name}, expected {wanted}")
    return module


def _child(module: TorchModule, name: str, wanted: str, where: str, source: str) -> TorchModule:
    if name not in module.children:
        raise CheckpointError(f"{source}: {where} has no sub-module {name!r}")
    return _expect_class(module.children[name], wanted, f"{where}.{name}", source)


def _fully_connected(rd: _Reader, module: TorchModule, path: str, fan_in: int, fan_out: int,
                     activation: str) -> tuple:
    """FullyConnectedLayer → (weight [in, out], bias [out]) with its gains folded in."""
    src = rd.source
    _expect_class(module, "FullyConnectedLayer", path, src)
    if _attr(module, "activation", path, src) != activation:
        raise CheckpointError(f"{src}: {path}: activation {describe(module.attrs['activation'])} is not supported "
                              f"(only {activation!r})")
    weight = rd.take(f"{path}.weight", (fan_out, fan_in)) * float(_attr(module, "weight_gain", path, src))
    if "bias" in module.params:
        bias = rd.take(f"{path}.bias", (fan_out,)) * float(_attr(module, "bias_gain", path, src))
    else:
        bias = np.zeros(fan_out)
    return tf.constant(weight.T.astype(np.float32)), tf.constant(bias.astype(np.float32))


def build_stylegan2(g: TorchModule, source: str) -> StyleGAN2:
    """A PyTorch StyleGAN 2 Generator module → the TF2 StyleGAN2, rendering NVIDIA's images."""
    _expect_class(g, "Generator", "the generator", source)
    synthesis = _child(g, "synthesis", "SynthesisNetwork", "G", source)
    mapping = _child(g, "mapping", "MappingNetwork", "G", source)
    gen = StyleGAN2.__new__(StyleGAN2)
    gen.source, gen.kind = source, "StyleGAN 2 (PyTorch)"
    gen.z_dim, gen.w_dim = int(_attr(g, "z_dim", "G", source)), int(_attr(g, "w_dim", "G", source))
    gen.c_dim = int(_attr(g, "c_dim", "G", source))
    if gen.z_dim < 1:
        raise CheckpointError(f"{source}: z_dim={gen.z_dim}: generators without a latent input are not supported")
    gen.resolution = int(_attr(g, "img_resolution", "G", source))
    gen.res_log2 = log2_resolution(gen.resolution, source)
    gen.channels = int(_attr(g, "img_channels", "G", source))
    gen.num_ws = int(_attr(g, "num_ws", "G", source))
    if gen.num_ws != 2 * gen.res_log2 - 2:
        raise CheckpointError(f"{source}: num_ws={gen.num_ws} does not match resolution {gen.resolution}")
    gen.default_cutoff = gen.num_ws  # truncation_cutoff=None truncates every row
    rd = _Reader(g, source)
    blocks = [_child(synthesis, f"b{2 ** r}", "SynthesisBlock", "G.synthesis", source)
              for r in range(2, gen.res_log2 + 1)]
    architectures = {_attr(b, "architecture", "G.synthesis block", source) for b in blocks}
    if len(architectures) != 1 or not architectures <= set(ARCHITECTURES):
        raise CheckpointError(f"{source}: synthesis architecture {sorted(architectures)} is not supported "
                              f"(one of {', '.join(ARCHITECTURES)})")
    gen.architecture = architectures.pop()
    gen._set_resample_filter(rd.take("synthesis.b4.resample_filter", (4, 4)))
    _read_mapping(gen, rd, mapping)
    _read_synthesis(gen, rd, blocks)
    rd.check_all_used()
    return gen


def _read_mapping(gen: StyleGAN2, rd: _Reader, m: TorchModule) -> None:
    src = rd.source
    n_layers = int(_attr(m, "num_layers", "G.mapping", src))
    if int(_attr(m, "c_dim", "G.mapping", src)) != gen.c_dim:
        raise CheckpointError(f"{src}: G.mapping c_dim disagrees with the generator's ({gen.c_dim})")
    fan_in = gen.z_dim
    gen.embed = None
    if gen.c_dim > 0:
        embed = _child(m, "embed", "FullyConnectedLayer", "G.mapping", src)
        features = rd.tensors.get("mapping.embed.weight", np.zeros((0,))).shape[0]
        gen.embed = _fully_connected(rd, embed, "mapping.embed", gen.c_dim, features, "linear")
        fan_in += features
    gen.normalize_latents = True
    gen.mapping_layers = []
    for i in range(n_layers):
        fc = _child(m, f"fc{i}", "FullyConnectedLayer", "G.mapping", src)
        fan_out = gen.w_dim if i == n_layers - 1 else rd.tensors.get(f"mapping.fc{i}.weight", np.zeros(0)).shape[0]
        gen.mapping_layers.append(_fully_connected(rd, fc, f"mapping.fc{i}", fan_in, fan_out, "lrelu"))
        fan_in = fan_out
    if "w_avg" not in m.buffers:
        raise CheckpointError(f"{src}: G.mapping has no w_avg (trained without w_avg_beta): truncation "
                              "needs the average W")
    gen.dlatent_avg = tf.constant(rd.take("mapping.w_avg", (gen.w_dim,)).astype(np.float32))


def _style(rd: _Reader, layer: TorchModule, path: str, cin: int, w_dim: int) -> tuple:
    affine = _child(layer, "affine", "FullyConnectedLayer", path, rd.source)
    return _fully_connected(rd, affine, f"{path}.affine", w_dim, cin, "linear")


def _synthesis_layer(gen: StyleGAN2, rd: _Reader, block: TorchModule, path: str, name: str,
                     cin: int, cout: int, gain: float) -> tuple[dict, np.ndarray, int]:
    """SynthesisLayer → (layer dict, stored noise map, noise resolution)."""
    src, where = rd.source, f"{path}.{name}"
    layer = _child(block, name, "SynthesisLayer", path, src)
    if _attr(layer, "activation", where, src) != "lrelu":
        raise CheckpointError(f"{src}: {where}: activation {describe(layer.attrs['activation'])} is not supported")
    up = int(_attr(layer, "up", where, src))
    res = int(_attr(layer, "resolution", where, src))
    if up not in (1, 2) or (up == 2) != (name == "conv0"):
        raise CheckpointError(f"{src}: {where}: up={up} is not supported here")
    weight = rd.take(f"{where}.weight", (cout, cin, 3, 3)).transpose(2, 3, 1, 0)  # → [kh, kw, in, out]
    if up == 2:  # legacy.py: PyTorch kernel = TF1 kernel flipped; undo it
        weight = weight[::-1, ::-1]
    rd.take(f"{where}.resample_filter", (4, 4))  # the block's filter; checked equal below
    if not np.array_equal(layer.buffers["resample_filter"], block.buffers["resample_filter"]):
        raise CheckpointError(f"{src}: {where}: its resample filter differs from the block's")
    if _attr(layer, "use_noise", where, src):
        strength = float(rd.take(f"{where}.noise_strength", ()))
        noise = rd.take(f"{where}.noise_const", (res, res)).astype(np.float32)
    else:
        strength, noise = 0.0, np.zeros((res, res), np.float32)
    clamp = _attr(layer, "conv_clamp", where, src, required=False)
    act_gain = float(_attr(layer, "act_gain", where, src))
    built = gen.modconv_layer(_style(rd, layer, where, cin, gen.w_dim), weight, strength,
                              rd.take(f"{where}.bias", (cout,)), up=up == 2,
                              clamp=None if clamp is None else float(clamp) * gain, gain=act_gain * gain)
    return built, noise, res


def _torgb(gen: StyleGAN2, rd: _Reader, block: TorchModule, path: str, cin: int) -> dict:
    src, where = rd.source, f"{path}.torgb"
    layer = _child(block, "torgb", "ToRGBLayer", path, src)
    weight = rd.take(f"{where}.weight", (gen.channels, cin, 1, 1))[:, :, 0, 0].T
    weight = weight * float(_attr(layer, "weight_gain", where, src))
    clamp = _attr(layer, "conv_clamp", where, src, required=False)
    return gen.torgb_layer(_style(rd, layer, where, cin, gen.w_dim), weight,
                           rd.take(f"{where}.bias", (gen.channels,)), None if clamp is None else float(clamp))


def _resnet_skip(gen: StyleGAN2, rd: _Reader, block: TorchModule, path: str, cin: int, cout: int):
    """The resnet block's skip: upsample then 1×1 conv (no bias, linear), gain √½, as one kernel."""
    src, where = rd.source, f"{path}.skip"
    layer = _child(block, "skip", "Conv2dLayer", path, src)
    if (_attr(layer, "up", where, src), _attr(layer, "activation", where, src)) != (2, "linear") \
            or layer.attrs.get("conv_clamp") is not None or layer.attrs.get("down", 1) != 1:
        raise CheckpointError(f"{src}: {where}: only NVIDIA's linear 2× up-sampling skip is supported")
    rd.take(f"{where}.resample_filter", (4, 4))
    weight = rd.take(f"{where}.weight", (cout, cin, 1, 1))[:, :, 0, 0].T  # [in, out]
    gain = float(_attr(layer, "weight_gain", where, src)) * float(_attr(layer, "act_gain", where, src))
    return tf.constant(gen.upsample_mix_kernel(weight * gain * RESNET_GAIN))


def _read_synthesis(gen: StyleGAN2, rd: _Reader, blocks: list[TorchModule]) -> None:
    src = rd.source
    gen.layers, gen.torgbs, gen.resnet_skips = [], [], []
    gen.noise_shapes, gen.const_noise = [], []
    cin = 0
    for i, block in enumerate(blocks):
        res, path = 4 << i, f"synthesis.b{4 << i}"
        last = i == len(blocks) - 1
        cout = rd.tensors.get(f"{path}.conv1.weight", np.zeros((0,))).shape[0]
        names = ["conv1"] if i == 0 else ["conv0", "conv1"]
        if i == 0:
            const = rd.take(f"{path}.const", (cout, 4, 4))
            gen.const_input = tf.constant(const.transpose(1, 2, 0)[None].astype(np.float32))
        else:
            rd.take(f"{path}.resample_filter", (4, 4))
        if not np.allclose(block.buffers.get("resample_filter"), blocks[0].buffers["resample_filter"]):
            raise CheckpointError(f"{src}: {path}: blocks with different resample filters are not supported")
        resnet = gen.architecture == "resnet" and i > 0
        if resnet:
            gen.resnet_skips.append(_resnet_skip(gen, rd, block, path, cin, cout))
        for name in names:
            layer_in = cin if name == "conv0" else cout
            gain = RESNET_GAIN if resnet and name == "conv1" else 1.0
            layer, noise, noise_res = _synthesis_layer(gen, rd, block, path, name, layer_in, cout, gain)
            if noise_res != res:
                raise CheckpointError(f"{src}: {path}.{name}: resolution {noise_res}, expected {res}")
            gen.layers.append(layer)
            gen.const_noise.append(noise)
            gen.noise_shapes.append((res, res))
        has_rgb = gen.architecture == "skip" or last
        if has_rgb != ("torgb" in block.children):
            raise CheckpointError(f"{src}: {path}: ToRGB layer {'missing' if has_rgb else 'unexpected'} "
                                  f"for architecture {describe(gen.architecture)}")
        gen.torgbs.append(_torgb(gen, rd, block, path, cout) if has_rgb else None)
        cin = cout
