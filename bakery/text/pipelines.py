"""Pipelines: how prompts, backends and cleaning combine into one snippet per ID.

prompted   one stage ([text.generate]): the prompt template, continued by the model,
           cleaned. The original's first approach (GPT-2 117M prompted with anime keywords
           and the start of a plot summary) and its last (GPT-3 and a short "season
           previews and reviews" prompt).
two_stage  [text.synopsis] writes a "TITLE|SYNOPSIS" line (the original finetuned a model on
           such lines); synopses shorter than its min_chars are rejected; the result is
           reformatted as `_Title_: synopsis` and handed to [text.episode], whose prompt
           asks for the first episode's plot; that continuation must reach its own min_chars.
           The snippet is the title line, a blank line, then the episode plot.

Prompt templates may use {id}; the episode prompt also {title}, {synopsis} and {header}
(= `_Title_: synopsis`). Other braces are left as they are.

`run(items, progress)` reports its work through `progress` as the backends do (in items;
the calls of one run add up to len(items)): the two stages count half an item each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from bakery.errors import BakeryError
from bakery.text.backends import Backend, Progress, Request
from bakery.text.clean import Cleaned, CleanRules, clean, normalize
from bakery.text.config import StageConfig, TextConfig

ATTEMPT_SHIFT, STAGE_SHIFT = 32, 48


def sub_seed(snippet_id: int, attempt: int, stage_index: int = 0) -> int:
    """Attempt 0 of stage 0 uses seed = ID, like the original; each resample and each later
    stage gets its own seed, disjoint from every other ID's."""
    if not 0 <= snippet_id < 1 << ATTEMPT_SHIFT:
        raise BakeryError(f"text: ID {snippet_id} is outside 0..2^32-1, the range of per-ID seeds")
    return snippet_id + (attempt << ATTEMPT_SHIFT) + (stage_index << STAGE_SHIFT)


@dataclass(frozen=True)
class Outcome:
    snippet_id: int
    cleaned: Cleaned
    seeds: tuple[int, ...]  # the sub-seed each stage used

    @property
    def ok(self) -> bool:
        return self.cleaned.ok


def read_prompt(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BakeryError(f"{path}: cannot read prompt template ({exc})") from None


def fill(template: str, **values) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template


def join_prefix(prefix: str, completion: str) -> str:
    if not prefix:
        return completion
    return prefix + ("" if prefix[-1].isspace() or not completion else " ") + completion


def stage_rules(rules: CleanRules, stage: StageConfig) -> CleanRules:
    """A stage's own output is held to its min_chars (and the shared repetition rules)."""
    return replace(rules, min_chars=stage.min_chars)


class Prompted:
    def __init__(self, cfg: TextConfig, backends: dict[str, Backend]):
        self.stage = cfg.stages[0]
        self.backend = backends[self.stage.name]
        self.template = read_prompt(self.stage.prompt)
        self.rules = cfg.clean

    def run(self, items: list[tuple[int, int]], progress: Progress | None = None) -> list[Outcome]:
        seeds = [sub_seed(i, attempt) for i, attempt in items]
        requests = [Request(fill(self.template, id=i), s) for (i, _), s in zip(items, seeds)]
        completions = self.backend.generate(requests, self.stage, progress)
        outcomes = []
        for (i, _), seed, request, completion in zip(items, seeds, requests, completions):
            cleaned = clean(join_prefix(self.stage.prefix, completion), self.rules, request.prompt, self.stage.prefix)
            if cleaned.ok and len(cleaned.text) < self.stage.min_chars:
                cleaned = Cleaned(None, f"too short ({len(cleaned.text)} < {self.stage.min_chars} characters)")
            outcomes.append(Outcome(i, cleaned, (seed,)))
        return outcomes


TITLE_SEPARATOR = re.compile(r"\s*\|\s*")


def split_title_synopsis(line: str) -> tuple[str, str] | None:
    """"TITLE|SYNOPSIS" → (title, synopsis); None when the line is not in that shape."""
    parts = TITLE_SEPARATOR.split(normalize(line), maxsplit=1)
    if len(parts) != 2:
        return None
    # Underscores and markdown would break the page's _Title_ markup.
    title = re.sub(r"[_*#\"“”]", "", parts[0]).strip(" -:")
    synopsis = parts[1].replace("|", " ").strip()
    if not title or len(title) > 100 or not synopsis:
        return None
    return title, synopsis


class TwoStage:
    def __init__(self, cfg: TextConfig, backends: dict[str, Backend]):
        self.synopsis_stage, self.episode_stage = cfg.stages
        self.synopsis_backend = backends[self.synopsis_stage.name]
        self.episode_backend = backends[self.episode_stage.name]
        self.synopsis_template = read_prompt(self.synopsis_stage.prompt)
        self.episode_template = read_prompt(self.episode_stage.prompt)
        self.rules = cfg.clean

    def synopsis(self, completion: str, prompt: str = "") -> tuple[str, str] | Cleaned:
        parsed = split_title_synopsis(completion)
        if parsed is None:
            return Cleaned(None, "synopsis: not a TITLE|SYNOPSIS line")
        title, text = parsed
        # No ellipsis room here: the synopsis is a middle part, so its length is checked as is.
        checked = clean(text, replace(stage_rules(self.rules, self.synopsis_stage), max_chars=10 ** 6), prompt,
                        self.synopsis_stage.prefix)
        if not checked.ok:
            return Cleaned(None, f"synopsis: {checked.reason}")
        return title, checked.text

    def run(self, items: list[tuple[int, int]], progress: Progress | None = None) -> list[Outcome]:
        half = (lambda work: progress(work / 2)) if progress is not None else None
        seeds1 = [sub_seed(i, a, 0) for i, a in items]
        first_requests = [Request(fill(self.synopsis_template, id=i), s) for (i, _), s in zip(items, seeds1)]
        completions = self.synopsis_backend.generate(first_requests, self.synopsis_stage, half)
        outcomes: dict[int, Outcome] = {}
        passed: list[tuple[int, int, str, str]] = []
        for (i, a), seed, request, completion in zip(items, seeds1, first_requests, completions):
            result = self.synopsis(completion, request.prompt)
            if isinstance(result, Cleaned):
                outcomes[i] = Outcome(i, result, (seed,))
            else:
                passed.append((i, a, *result))
        if half is not None and len(passed) < len(items):
            half(len(items) - len(passed))  # rejected at the synopsis: no episode to wait for
        seeds2 = [sub_seed(i, a, 1) for i, a, _, _ in passed]
        requests = [Request(fill(self.episode_template, id=i, title=t, synopsis=s, header=f"_{t}_: {s}"), seed)
                    for (i, _, t, s), seed in zip(passed, seeds2)]
        episodes = self.episode_backend.generate(requests, self.episode_stage, half) if requests else []
        first_seed = dict(zip((i for i, _ in items), seeds1))
        for (i, _, title, synopsis), seed, completion in zip(passed, seeds2, episodes):
            seeds = (first_seed[i], seed)
            # An echo of the episode prompt's own words; the synopsis it continues is material, not echo.
            instructions = fill(self.episode_template, id=i, title="", synopsis="", header="")
            episode = clean(join_prefix(self.episode_stage.prefix, completion),
                            replace(stage_rules(self.rules, self.episode_stage), max_chars=10 ** 6),
                            instructions, self.episode_stage.prefix)
            if not episode.ok:
                outcomes[i] = Outcome(i, Cleaned(None, f"episode: {episode.reason}"), seeds)
                continue
            outcomes[i] = Outcome(i, clean(f"_{title}_: {synopsis}\n\n{episode.text}", self.rules), seeds)
        return [outcomes[i] for i, _ in items]


PIPELINES = {"prompted": Prompted, "two_stage": TwoStage}


def make_pipeline(cfg: TextConfig, backends: dict[str, Backend]):
    return PIPELINES[cfg.pipeline](cfg, backends)
