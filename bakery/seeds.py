"""Seed lists as NVIDIA's scripts write them: "0-9,20,30-35" (their `parse_range`).

A leaf module: `bakery generate --seeds`, `[[images.bands]] seeds` and anything else that takes
seeds parse them here, so the syntax and its error messages are the same everywhere.
A seed seeds numpy's RandomState, which takes 0 ≤ seed ≤ 2**32 - 1.
"""

from __future__ import annotations

MAX_SEED = 2**32 - 1
SYNTAX = 'must look like "A-B" with whole numbers A ≤ B, or a comma list such as "0-9,20,30-35"'


class SeedListError(ValueError):
    """The text is not a seed list; the message says what is wrong (without naming the option)."""


def parse_seed_ranges(text: str) -> list[tuple[int, int]]:
    """ "0-9,20,30-35" → [(0, 9), (20, 20), (30, 35)], in the order written (inclusive ends)."""
    if not isinstance(text, str) or not text.strip():
        raise SeedListError(f"{SYNTAX}, got {text!r}")
    ranges = []
    for part in text.split(","):
        part = part.strip()
        first, sep, last = part.partition("-")
        try:
            a, b = int(first), int(last if sep else first)
        except ValueError:
            raise SeedListError(f"{SYNTAX}, got {what_is_wrong(text, part, 'is not a seed or range')}") from None
        if a < 0:
            raise SeedListError(f"{SYNTAX}, got {what_is_wrong(text, part, 'is below 0')}")
        if b < a:
            raise SeedListError(f"{SYNTAX}, got {what_is_wrong(text, part, f'runs backwards (write {b}-{a})')}")
        if b > MAX_SEED:
            raise SeedListError(f"seed {b} is above 2**32-1 = {MAX_SEED} (numpy's RandomState limit), in {text!r}")
        ranges.append((a, b))
    return ranges


def what_is_wrong(text: str, part: str, problem: str) -> str:
    """"'5-3', which runs backwards (write 3-5)", or for one part of a list
    "'0-9,5-3': '5-3' runs backwards (write 3-5)"."""
    if part == text.strip():
        return f"{text!r}, which {problem}"
    return f"{text!r}: {part!r} {problem}"


def span(first: int, last: int) -> str:
    """A run of seeds as people write it: "6" for one seed, "6-9" for several."""
    return str(first) if first == last else f"{first}-{last}"


def parse_seeds(text: str) -> list[int]:
    """ "0-2,7" → [0, 1, 2, 7]; a seed listed twice is kept once, at its first place."""
    return expand_ranges(parse_seed_ranges(text))


def expand_ranges(ranges: list[tuple[int, int]]) -> list[int]:
    """[(0, 2), (7, 7)] → [0, 1, 2, 7], in the order written, a repeat kept once."""
    return list(dict.fromkeys(i for a, b in ranges for i in range(a, b + 1)))


def format_seeds(seeds: list[int]) -> str:
    """[0, 1, 2, 7] → "0-2,7": the shortest list in the same syntax (for log lines)."""
    runs: list[list[int]] = []
    for seed in seeds:
        if runs and seed == runs[-1][1] + 1:
            runs[-1][1] = seed
        else:
            runs.append([seed, seed])
    return ",".join(span(a, b) for a, b in runs)
