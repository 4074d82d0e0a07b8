"""One entry point from a checkpoint file to its discriminator in TF2.

The generator loaders return what generation needs; the TF1 one keeps only `Gs`, so the `D`
of a (G, D, Gs) tuple is read here with the same restricted unpickler and the same state
checks (nothing from the file is run). A PyTorch snapshot's `D` is already in the tree that
torch_pickle.py returns. A file without a usable D (a lone Gs, a generator-only export) is
one error saying so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from bakery.images.checkpoints import FORMAT_TF1, FORMAT_TORCH, detect_format
from bakery.images.discriminator import Discriminator
from bakery.images.pickle_loader import CheckpointError, Network, _check_network, read_checkpoint, unpickle_networks
from bakery.images.torch_pickle import load_torch_pickle


MAX_RESOLUTION = 4096  # NVIDIA's largest models are 1024 px; a file claiming more is refused, not allocated


@dataclass
class LoadedDiscriminator:
    path: Path
    sha256: str
    discriminator: Discriminator
    format: str

    @property
    def description(self) -> str:
        return f"{self.discriminator.kind} from an {self.format}"


def load_discriminator(path: Path | str) -> LoadedDiscriminator:
    """Checkpoint → its discriminator; an unknown architecture or a missing D is an error."""
    loaded = _load(Path(path))
    d = loaded.discriminator
    if d.resolution > MAX_RESOLUTION:
        raise CheckpointError(f"{path}: D takes {d.resolution}×{d.resolution} images; more than "
                              f"{MAX_RESOLUTION} px is not supported")
    return loaded


def _load(path: Path) -> LoadedDiscriminator:
    if detect_format(path) == FORMAT_TORCH:
        checkpoint = load_torch_pickle(path)
        if "D" not in checkpoint.networks:
            raise CheckpointError(f"{path}: the snapshot holds no discriminator 'D' (networks: "
                                  f"{', '.join(checkpoint.networks)}): ranking needs a training snapshot "
                                  "with D (network-snapshot-*.pkl), not a generator-only export")
        from bakery.images.d_stylegan2_pytorch import build_discriminator

        d = build_discriminator(checkpoint.networks["D"], str(path))
        return LoadedDiscriminator(path, checkpoint.sha256, d, FORMAT_TORCH)
    d, sha256 = load_tf1_d(path)
    if d.build_func_name == "D_stylegan2":
        from bakery.images.d_stylegan2 import from_tf1

        return LoadedDiscriminator(path, sha256, from_tf1(d, str(path)), FORMAT_TF1)
    if d.build_func_name == "D_basic":
        from bakery.images.d_stylegan1 import DStyleGAN1

        return LoadedDiscriminator(path, sha256, DStyleGAN1(d, str(path)), FORMAT_TF1)
    raise CheckpointError(f"{path}: unsupported discriminator {d.build_func_name!r} "
                          "(supported: StyleGAN 2 D_stylegan2, StyleGAN 1 D_basic)")


def load_tf1_d(path: Path) -> tuple[Network, str]:
    """The `D` of a TF1 (G, D, Gs) pickle, read like pickle_loader.load_network_pickle reads Gs."""
    data = read_checkpoint(path)
    obj = unpickle_networks(path, data)
    if isinstance(obj, Network):
        raise CheckpointError(f"{path}: a lone generator network ({obj.name!r:.40}) without a discriminator: "
                              "ranking needs the (G, D, Gs) snapshot NVIDIA's training writes")
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, Network) for n in obj)):
        raise CheckpointError(f"{path}: expected a (G, D, Gs) tuple of networks, got {type(obj).__name__}")
    d = obj[1]
    _check_network(d, path)
    return d, hashlib.sha256(data).hexdigest()
