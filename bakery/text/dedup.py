"""Duplicate snippets across IDs: a cleaning rule that needs the other IDs' snippets.

A server that decodes greedily unless told otherwise (transformers serve for a GGUF without
a sampling generation config, for one) ignores seed and temperature and returns the same
snippet for every ID; every one of them passes the per-snippet rules. So each accepted
snippet is compared with the others:

- exactly, by a hash of its normalised text (case, punctuation and spacing folded), against
  every snippet of the bake;
- nearly, by the Jaccard similarity of its character 5-gram sets against the last WINDOW
  accepted snippets (a rolling window keeps the cost per snippet constant).

A duplicate is rejected like any other failed sample ("duplicate of ID 3") and resampled
with the next sub-seed. When most recent samples are duplicates, resampling cannot help:
the backend ignores the sampling parameters, and the stage stops with that message.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import deque

from bakery.errors import BakeryError
from bakery.text.clean import Cleaned

SHINGLE = 5
WINDOW = 200            # near-duplicate comparisons per snippet
NEAR_THRESHOLD = 0.75   # unrelated snippets share ~0.1-0.3 of their 5-grams, a copy with a few words changed ~0.85
VERDICTS = 8            # the stop rule looks at this many latest accepted-or-duplicate samples
MIN_VERDICTS = 4


def folded(text: str) -> str:
    """Lowercase letters and digits separated by single spaces: what a reader compares."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.findall(r"\w+", text))


def shingles(text: str) -> frozenset[int]:
    f = folded(text)
    if len(f) <= SHINGLE:
        return frozenset({hash(f)})
    return frozenset(hash(f[i:i + SHINGLE]) for i in range(len(f) - SHINGLE + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


class DuplicateFinder:
    def __init__(self, window: int = WINDOW, threshold: float = NEAR_THRESHOLD):
        self.exact: dict[str, int] = {}
        self.recent: deque[tuple[int, frozenset]] = deque(maxlen=window)
        self.threshold = threshold

    @staticmethod
    def digest(text: str) -> str:
        return hashlib.sha256(folded(text).encode("utf-8")).hexdigest()

    def add(self, snippet_id: int, text: str) -> None:
        self.exact.setdefault(self.digest(text), snippet_id)
        self.recent.append((snippet_id, shingles(text)))

    def find(self, text: str) -> int | None:
        """The ID this text duplicates (exactly or nearly), or None."""
        same = self.exact.get(self.digest(text))
        if same is not None:
            return same
        grams = shingles(text)
        for other_id, other in reversed(self.recent):
            if jaccard(grams, other) >= self.threshold:
                return other_id
        return None


class DuplicateGuard:
    """Wraps a pipeline: duplicate outcomes become rejected ones; stops a backend that
    ignores sampling. `hint` says what to do about it for the backend in use."""

    def __init__(self, pipeline, finder: DuplicateFinder, hint: str):
        self.pipeline, self.finder, self.hint = pipeline, finder, hint
        self.caught = 0
        self.verdicts: deque[bool] = deque(maxlen=VERDICTS)

    def run(self, items):
        return self.check(self.pipeline.run(items))

    def check(self, batch_outcomes):
        """One batch's outcomes (computed anywhere), checked in order against the kept snippets."""
        from bakery.text.pipelines import Outcome

        outcomes = []
        for outcome in batch_outcomes:
            if outcome.ok:
                other = self.finder.find(outcome.cleaned.text)
                self.verdicts.append(other is not None)
                if other is None:
                    self.finder.add(outcome.snippet_id, outcome.cleaned.text)
                else:
                    self.caught += 1
                    outcome = Outcome(outcome.snippet_id, Cleaned(None, f"duplicate of ID {other}"), outcome.seeds)
            outcomes.append(outcome)
        self.stop_if_sampling_ignored()
        return outcomes

    def stop_if_sampling_ignored(self) -> None:
        dupes = sum(self.verdicts)
        if len(self.verdicts) >= MIN_VERDICTS and dupes * 2 > len(self.verdicts):
            raise BakeryError(f"text: {dupes} of the last {len(self.verdicts)} samples repeat earlier snippets "
                              f"although each ID has its own seed: {self.hint}")


def sampling_hint(cfg) -> str:
    """What to tell the user when every ID comes back the same."""
    stage = cfg.stages[0]
    if any(s.backend == "openai" for s in cfg.stages):
        return (f"the server at {cfg.openai.base_url} ignores the sampling parameters (seed, temperature, "
                "top_p) and decodes greedily; send the options it needs in [text.openai] extra_body "
                "(transformers serve: extra_body = { generation_config = '{\"do_sample\": true}' }; "
                "see docs/text.md)")
    if stage.temperature == 0:
        return "temperature = 0 decodes greedily, so every ID gets the same text: raise temperature"
    return ("the model keeps writing the same text: raise temperature or top_p, or put {id} into the prompt")


def guard_duplicates(pipeline, cfg, existing: dict[int, str]) -> DuplicateGuard:
    """The pipeline, checked against the snippets already written (`existing`: ID → text)."""
    finder = DuplicateFinder()
    for snippet_id in sorted(existing):
        finder.add(snippet_id, existing[snippet_id])
    return DuplicateGuard(pipeline, finder, sampling_hint(cfg))
