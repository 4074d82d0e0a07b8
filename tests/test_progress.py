"""Progress bars: a batch whose items all finish at once still moves the bar while it works."""

from __future__ import annotations

import random
import re

import pytest

from bakery.cli import main
from bakery.progress import ItemProgress
from text_support import write_project


class Clock:
    """tqdm's clock, moved by hand: the rates the bar shows are exact, not timing-dependent."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr("tqdm.std.time", fake)  # tqdm reads its clock from there when a bar is made
    return fake


FRAME = re.compile(r"(?P<desc>\w+): +(?P<percent>\d+)%\|[^|]*\| (?P<done>\d+)/(?P<goal>\d+) "
                   r"\[[^<]*<[^,]*, +(?P<rate>[\d.?]+)(?P<unit>s/snippet|snippet/s)")


def frames(err: str) -> list[dict]:
    """Every drawn state of the bar, in order."""
    return [m.groupdict() for m in FRAME.finditer(err.replace("\r", "\n"))]


def per_second(frame: dict) -> float:
    rate = float(frame["rate"])
    return 1 / rate if frame["unit"] == "s/snippet" else rate


def test_item_progress_moves_within_a_batch_and_counts_items_done(clock, capsys):
    with ItemProgress("text", 4, unit="snippet") as meter:
        for _ in range(4):  # one batch of 4 items, a quarter of each per step, a second per step
            clock.now += 1.0
            meter.advance(1.0)
        meter.settle(4, done=3, again=1)  # one came back rejected: it is sampled again
        clock.now += 1.0
        meter.advance(1.0)
        meter.settle(1, done=1)
    shown = frames(capsys.readouterr().err)
    inside = [f for f in shown if f["done"] == "0"]
    assert [int(f["percent"]) for f in inside if 0 < int(f["percent"]) < 100][:3] == [25, 50, 75]
    assert all(per_second(f) == pytest.approx(1.0) for f in inside if f["rate"] != "?")
    assert (shown[-1]["done"], shown[-1]["goal"], shown[-1]["percent"]) == ("4", "4", "100")


class SteppingBackend:
    """A fake model: each batch takes four decode steps of one (fake) second and reports them."""

    def __init__(self, clock: Clock, short: set[int] = frozenset()):
        self.clock, self.short, self.batches = clock, short, []

    def identity(self) -> dict:
        return {"backend": "fake"}

    def generate(self, requests, stage, progress=None):
        self.batches.append(len(requests))
        for _ in range(4):
            self.clock.now += 1.0
            progress(len(requests) / 4)
        return ["Too short." if r.seed in self.short else story(r.seed) for r in requests]


def story(seed: int) -> str:
    rng = random.Random(seed)
    who = rng.choice(["Akari", "Sora", "Ren", "Captain Hoshino", "the shrine maiden", "Professor Kuroda"])
    what = rng.choice(["a forgotten lighthouse", "a glass violin", "the colony's artificial sun", "a moon map"])
    days = rng.randint(2, 999)
    return (f"{who} spends {days} days looking for {what}, and finds instead a letter numbered {seed * 7919} "
            f"that nobody in the harbour town of Kiri-{seed} admits to writing.")


@pytest.fixture
def stepping(tmp_path, monkeypatch, clock):
    from bakery.text import stage as text_stage

    backend = SteppingBackend(clock)
    monkeypatch.setattr(text_stage, "load_backend", lambda cfg, stage, quiet: backend)
    config = write_project(tmp_path, """
[text]
max_attempts = 2
[text.generate]
batch_size = 4
[text.clean]
min_chars = 60
""", seeds="0-7")
    return config, backend


def test_text_bar_moves_within_a_batch_at_the_true_rate_per_snippet(stepping, capsys):
    config, backend = stepping
    assert main(["-c", str(config), "text"]) == 0
    assert backend.batches == [4, 4]
    shown = [f for f in frames(capsys.readouterr().err) if f["desc"] == "text"]
    # Before the first batch of 4 is back, the bar has moved: a quarter of the batch per step.
    first = [int(f["percent"]) for f in shown if f["done"] == "0"]
    assert [p for p in first if 0 < p < 50] == [12, 25, 38]
    # 4 snippets per 4 s: 1 snippet/s (a batch counted as one step would say 4 s/snippet).
    assert all(per_second(f) == pytest.approx(1.0, rel=0.01) for f in shown if f["rate"] != "?")
    assert {(f["done"], f["goal"]) for f in shown} >= {("4", "8"), ("8", "8")}


def test_a_resample_adds_its_work_and_the_count_ends_at_the_goal(stepping, capsys):
    config, backend = stepping
    backend.short = {2}  # ID 2's first sample is rejected: resampled in a batch of its own
    assert main(["-c", str(config), "text"]) == 0
    assert backend.batches == [4, 4, 1]
    shown = [f for f in frames(capsys.readouterr().err) if f["desc"] == "text"]
    assert shown[-1]["done"] == shown[-1]["goal"] == "8" and shown[-1]["percent"] == "100"
    assert all(int(f["percent"]) <= 100 for f in shown)
    assert "9" not in {f["goal"] for f in shown}  # the count is of snippets, the resample is work
