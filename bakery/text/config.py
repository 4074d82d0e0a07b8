"""The [text] section: how snippets are generated and cleaned."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bakery.config import Table

PIPELINES = ("prompted", "two_stage")
BACKENDS = ("transformers", "openai")
EMBEDDED_MODEL = "embedded"


@dataclass(frozen=True)
class TextConfig:
    enabled: bool
    pipeline: str
    backend: str
    model: str | Path
    prompt: Path
    batch_size: int
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    min_chars: int
    max_chars: int
    max_attempts: int


def parse_text(t: Table) -> TextConfig:
    model_text = t.str("model", EMBEDDED_MODEL, allow_empty=False)
    cfg = TextConfig(
        enabled=t.bool("enabled", True),
        pipeline=t.str("pipeline", "prompted", choices=PIPELINES),
        backend=t.str("backend", "transformers", choices=BACKENDS),
        model=EMBEDDED_MODEL if model_text == EMBEDDED_MODEL else t.path_value("model", must_exist=False),
        prompt=t.path_value("prompt", "content/prompts/plot.txt", must_exist=True),
        batch_size=t.int("batch_size", 4, min=1, max=1024),
        max_new_tokens=t.int("max_new_tokens", 160, min=1, max=4096),
        temperature=t.float("temperature", 0.7, min=0.0, max=5.0),
        top_k=t.int("top_k", 30, min=0),
        top_p=t.float("top_p", 1.0, min=0.0, max=1.0),
        repetition_penalty=t.float("repetition_penalty", 1.1, min=0.5, max=5.0),
        min_chars=t.int("min_chars", 150, min=0),
        max_chars=t.int("max_chars", 1200, min=1),
        max_attempts=t.int("max_attempts", 4, min=1, max=100),
    )
    if cfg.max_chars < cfg.min_chars:
        raise t.error("max_chars", f"{cfg.max_chars} is below min_chars ({cfg.min_chars})")
    t.finish()
    return cfg
