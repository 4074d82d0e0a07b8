"""Text backends: a local transformers model or an OpenAI-compatible HTTP API.

Both take a list of `Request`s for one stage and return one completion per request, in
order. A completion is the text the model wrote after the prompt (and after the stage's
prefix), cut before the stage's stop strings and the end-of-text marker.

While they work they report how far they are through `progress`, when given: a callable
taking work done since the last call, in requests (0.5 = half of one request's tokens). The
calls of one `generate` add up to the number of requests. The caller decides what to show
(bakery/progress.py ItemProgress); a backend never draws anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from bakery.text.config import StageConfig


Progress = Callable[[float], None]  # work done since the last call, in requests


@dataclass(frozen=True)
class Request:
    prompt: str   # the rendered prompt template (without the stage prefix)
    seed: int     # the sub-seed of this ID, attempt and stage


class Backend(Protocol):
    def identity(self) -> dict:
        """What produced the text: backend, model name and file checksums (for the manifest)."""

    def generate(self, requests: list[Request], stage: StageConfig, progress: Progress | None = None) -> list[str]:
        """One completion per request, in order."""


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Leading whitespace is dropped first, so that a stop string "\n" ends the first line
    the model writes rather than the empty one it may start with."""
    text = text.lstrip()
    positions = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[:min(positions)] if positions else text


def strip_echoed_prefix(text: str, prefix: str) -> str:
    """Chat models sometimes restate the prefix they were asked to continue; keep it once."""
    if prefix.strip() and text.startswith(prefix.strip()):
        return text[len(prefix.strip()):].lstrip()
    return text


def finish_completion(text: str, stage: StageConfig, chat: bool) -> str:
    """What every backend returns: cut at the stop strings, without a restated prefix."""
    text = cut_at_stop(text, stage.stop)
    return strip_echoed_prefix(text, stage.prefix) if chat else text


def hit_stop(text: str, stop: tuple[str, ...]) -> bool:
    return any(s in text.lstrip() for s in stop)
