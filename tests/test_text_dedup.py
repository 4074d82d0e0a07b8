"""The duplicate rule on its own: exact and near copies are found, different stories are not,
and a backend that repeats itself is stopped."""

from __future__ import annotations

import pytest

from bakery.errors import BakeryError
from bakery.text.clean import Cleaned
from bakery.text.dedup import DuplicateFinder, DuplicateGuard
from bakery.text.pipelines import Outcome

STORIES = [
    "_Starlight Bakery_: In the first episode, Akari inherits her grandmother's bakery and finds that its "
    "oldest oven opens onto a market in the Edo period. She sells melon bread to a samurai who pays in gold.",
    "_Starlight Bakery_: In the first episode, the student council president loses the school festival budget "
    "to a fox spirit and must win it back in a cooking contest judged by the ghost of the headmaster.",
    "In the first episode, Ren transfers to a school on a floating island where every club is secretly a "
    "mecha squadron. On his first day he is drafted as the pilot of a robot nobody has managed to start.",
    "In the first episode, a retired idol opens a detective agency in Neo-Kyoto. Her first client is a "
    "vending machine that claims to have witnessed a murder, and only she can hear it speak.",
]


def test_exact_copies_ignore_case_spacing_and_punctuation():
    finder = DuplicateFinder()
    finder.add(7, STORIES[0])
    assert finder.find(STORIES[0].upper().replace(". ", "!  ")) == 7
    assert finder.find(STORIES[0] + "\n") == 7


def test_a_copy_with_a_few_words_changed_is_near():
    finder = DuplicateFinder()
    finder.add(3, STORIES[2])
    edited = STORIES[2].replace("Ren", "Sora").replace("first day", "second day")
    assert finder.find(edited) == 3


def test_different_stories_with_the_same_opening_are_not_duplicates():
    finder = DuplicateFinder()
    for i, story in enumerate(STORIES):
        assert finder.find(story) is None, i
        finder.add(i, story)


class Repeating:
    """A pipeline whose backend ignores the seed: every ID gets `text`."""

    def __init__(self, texts):
        self.texts = texts

    def run(self, items):
        return [Outcome(i, Cleaned(self.texts[n % len(self.texts)]), (i,)) for n, (i, _) in enumerate(items)]


def test_guard_rejects_duplicates_and_stops_a_backend_that_ignores_sampling():
    guard = DuplicateGuard(Repeating(STORIES), DuplicateFinder(), "hint")
    assert all(o.ok for o in guard.run([(i, 0) for i in range(4)])) and guard.caught == 0
    guard = DuplicateGuard(Repeating(STORIES[:1]), DuplicateFinder(), "the server ignores sampling")
    with pytest.raises(BakeryError, match="3 of the last 4 samples repeat earlier snippets.*ignores sampling"):
        guard.run([(i, 0) for i in range(4)])
