"""One entry point from a checkpoint file to the matching TF2 generator.

It detects the checkpoint's format (NVIDIA's TensorFlow 1 pickles, or the PyTorch snapshots of
stylegan2-ada-pytorch and StyleGAN3) and its architecture, says which it found, and builds the
right generator; every import arrow points one way: checkpoints → architectures → generator
(the shared leaf).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bakery.images.generator import Generator, class_labels
from bakery.images.pickle_loader import Checkpoint, CheckpointError, load_network_pickle, read_checkpoint
from bakery.images.torch_pickle import (PERSISTENT_GLOBAL, TorchCheckpoint, TorchModule, first_network_global,
                                        load_torch_pickle)

FORMAT_TF1 = "NVIDIA TensorFlow 1 network pickle"
FORMAT_TORCH = "NVIDIA PyTorch network snapshot"
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip container (a state_dict or a whole model)


@dataclass
class LoadedModel:
    checkpoint: Checkpoint | TorchCheckpoint
    generator: Generator
    format: str = FORMAT_TF1  # which container format the file was (FORMAT_TF1 / FORMAT_TORCH)

    @property
    def sha256(self) -> str:
        return self.checkpoint.sha256

    @property
    def description(self) -> str:
        """e.g. 'StyleGAN 2 (PyTorch) from an NVIDIA PyTorch network snapshot'."""
        return f"{self.generator.kind} from an {self.format}"


def detect_format(path: Path | str) -> str:
    """FORMAT_TF1 or FORMAT_TORCH, from the file's first bytes; other files are a clear error."""
    return format_of(read_checkpoint(Path(path)), Path(path))


def format_of(data: bytes, path: Path) -> str:
    """FORMAT_TF1 or FORMAT_TORCH for a checkpoint's bytes (the first network global it names)."""
    if data[:4] == ZIP_MAGIC:
        raise CheckpointError(f"{path}: a torch.save archive (state_dict or model), not an NVIDIA network pickle: "
                              "use the .pkl snapshot that NVIDIA's training code writes")
    return FORMAT_TORCH if first_network_global(data) == PERSISTENT_GLOBAL else FORMAT_TF1


def load_generator(path: Path | str) -> LoadedModel:
    """Checkpoint → the matching TF2 generator; an unknown format or architecture is an error.
    The file is read once; its bytes go to the format sniff and to the loader."""
    path = Path(path)
    data = read_checkpoint(path)
    if format_of(data, path) == FORMAT_TORCH:
        checkpoint = load_torch_pickle(path, data)
        return LoadedModel(checkpoint, torch_generator(checkpoint.generator(), str(path)), FORMAT_TORCH)
    checkpoint = load_network_pickle(path, data)
    gs, source = checkpoint.gs, str(path)
    synthesis = gs.components.get("synthesis")
    pair = (gs.build_func_name, synthesis.build_func_name if synthesis else None)
    if pair == ("G_main", "G_synthesis_stylegan2"):
        from bakery.images.stylegan2 import StyleGAN2

        return LoadedModel(checkpoint, StyleGAN2(gs, source))
    if pair == ("G_style", "G_synthesis"):
        from bakery.images.stylegan1 import StyleGAN1

        return LoadedModel(checkpoint, StyleGAN1(gs, source))
    raise CheckpointError(f"{source}: unsupported generator architecture {pair[0]}/{pair[1]} "
                          "(supported: StyleGAN 2 G_main/G_synthesis_stylegan2, StyleGAN 1 G_style/G_synthesis)")


def torch_generator(g: TorchModule, source: str) -> Generator:
    """A PyTorch generator module: StyleGAN3 if its synthesis starts with a Fourier-feature
    input layer, else StyleGAN 2 (stylegan2-ada-pytorch or the stylegan3 repo's StyleGAN 2)."""
    synthesis = g.children.get("synthesis")
    if synthesis is None or g.class_name != "Generator":
        raise CheckpointError(f"{source}: the snapshot's generator is a {g.class_name} without a synthesis "
                              "network; not a StyleGAN generator")
    if any(child.class_name == "SynthesisInput" for child in synthesis.children.values()):
        from bakery.images.stylegan3 import StyleGAN3

        return StyleGAN3(g, source)
    if synthesis.class_name == "SynthesisNetwork":
        from bakery.images.stylegan2_pytorch import build_stylegan2

        return build_stylegan2(g, source)
    raise CheckpointError(f"{source}: unsupported PyTorch synthesis network {synthesis.class_name!r} "
                          "(supported: StyleGAN 2 SynthesisNetwork, StyleGAN3 with SynthesisInput)")


def check_band_classes(gen: Generator, bands) -> None:
    """Each band's `class` suits the model: required by a conditional one, refused otherwise."""
    for i, band in enumerate(bands):
        try:
            class_labels(gen, [getattr(band, "class_index", None)])
        except CheckpointError as exc:
            raise CheckpointError(f"images.bands[{i}].class: {exc}") from None


def check_band_transforms(gen: Generator, bands) -> None:
    """`translate` / `rotate` move StyleGAN3's input layer; other models have none to move."""
    for i, band in enumerate(bands):
        if getattr(band, "transformed", False) and not gen.takes_transform:
            key = "translate" if band.translate is not None and any(band.translate) else "rotate"
            raise CheckpointError(f"images.bands[{i}].{key}: only StyleGAN3 models take translate/rotate "
                                  f"(an input transform); this model is {gen.kind}")
