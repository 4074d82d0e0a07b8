"""One entry point from a checkpoint file to the matching TF2 generator.

It detects the checkpoint's format and architecture and builds the right generator; every
import arrow points one way: checkpoints → architectures → generator (the shared leaf).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bakery.images.generator import Generator
from bakery.images.pickle_loader import Checkpoint, CheckpointError, load_network_pickle


@dataclass
class LoadedModel:
    checkpoint: Checkpoint
    generator: Generator

    @property
    def sha256(self) -> str:
        return self.checkpoint.sha256


def load_generator(path: Path | str) -> LoadedModel:
    """Checkpoint → the matching TF2 generator; an unknown architecture is an error."""
    checkpoint = load_network_pickle(path)
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
