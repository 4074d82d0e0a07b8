"""Progress bars, spinners and log setup shared by every stage (tqdm, silenced by -q)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("bakery")


class BarSafeHandler(logging.StreamHandler):
    """Writes each log line above the running progress bars (tqdm.write clears them, prints,
    and redraws them), so that a line logged mid-stage is never glued to a bar's last frame."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 -- logging's own convention: report, never raise
            self.handleError(record)


def setup_logging(verbosity: int) -> None:
    """verbosity: -1 quiet (warnings only), 0 normal, 1+ debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = BarSafeHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("bakery")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
             quiet: bool = False, **kwargs) -> tqdm:
    """A tqdm bar on stderr; hidden with -q or when there is nothing to do."""
    return tqdm(items, desc=desc, total=total, unit=unit, disable=quiet or total == 0,
                file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)


class Spinner:
    """A one-line "⠋ loading model 12 s" indicator for a step with no countable items.

    It appears only when the step outlasts `delay` (so quick steps print nothing), redraws a
    few times a second from a daemon thread, and is erased when the step ends; `elapsed`
    then holds the step's duration for the caller's log line.
    """

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, desc: str, quiet: bool = False, delay: float = 0.5, interval: float = 0.25):
        self.desc, self.quiet, self.delay, self.interval = desc, quiet, delay, interval
        self.elapsed = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream = None
        self._start = 0.0

    def __enter__(self) -> "Spinner":
        self._start = time.monotonic()
        if not self.quiet and sys.stderr.isatty():  # redraws would litter a log file
            # Our own copy of the terminal: the step may redirect fd 2 (TensorFlow's start-up
            # filter does), and the spinner must neither vanish into nor pollute that capture.
            sys.stderr.flush()
            self._stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", encoding="utf-8", errors="replace")
            self._thread = threading.Thread(target=self._spin, name=f"spinner: {self.desc}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._stream.close()
        self.elapsed = time.monotonic() - self._start

    def _spin(self) -> None:
        if self._stop.wait(self.delay):
            return
        bar = tqdm(total=None, bar_format="{desc}", file=self._stream, dynamic_ncols=True, leave=False)
        try:
            frame = 0
            while True:
                seconds = time.monotonic() - self._start
                bar.set_description_str(f"{self.FRAMES[frame % len(self.FRAMES)]} {self.desc} {seconds:.0f} s")
                frame += 1
                if self._stop.wait(self.interval):
                    break
        finally:
            bar.close()


def spinner(desc: str, quiet: bool = False, delay: float = 0.5) -> Spinner:
    """`with spinner("loading model", quiet=args.quiet) as s: ...`; then s.elapsed (seconds)."""
    return Spinner(desc, quiet=quiet, delay=delay)


class _ItemBar(tqdm):
    """A tqdm bar whose position is work (fractions of items) but whose count is items done."""

    def __init__(self, *args, goal: int = 0, **kwargs):
        self.done, self.goal = 0, goal  # before tqdm draws the first frame
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self):
        return {**super().format_dict, "done": self.done, "goal": self.goal}


class ItemProgress:
    """Progress over items that finish in batches, with the work inside a batch shown as it goes.

    A batch of 36 snippets that all finish after 25 s would otherwise leave the bar at 0/36
    for 25 s and then report one step's rate. Whoever does the work reports it as it goes
    through `advance` (in items: 0.25 = a quarter of one item), from any thread: the bar
    moves within the batch and its rate is per item. When the batch's items come back,
    `settle` counts them: the bar's position becomes exact (a batch that reported nothing,
    say one computed elsewhere, moves it all at once) and `again` items that must be redone
    (a resample) add their work to the total. The count shown is items done of `total`.
    The bar is drawn from `__enter__` on (not while a model loads), on stderr, hidden with -q.
    """

    BAR_FORMAT = "{l_bar}{bar}| {done}/{goal} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"

    def __init__(self, desc: str, total: int, unit: str = "it", quiet: bool = False):
        self.desc, self.total, self.unit, self.quiet = desc, total, unit, quiet
        self.bar: _ItemBar | None = None
        self.in_flight = 0.0  # work reported on the items not yet settled
        self.lock = threading.Lock()

    def __enter__(self) -> "ItemProgress":
        self.bar = _ItemBar(total=self.total, goal=self.total, desc=self.desc, unit=self.unit, file=sys.stderr,
                            dynamic_ncols=True, leave=False, disable=self.quiet or self.total == 0,
                            bar_format=self.BAR_FORMAT)
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def advance(self, work: float) -> None:
        with self.lock:
            if self.bar is None:
                return
            self.in_flight += work
            self.bar.update(work)

    def settle(self, items: int, done: int, again: int = 0) -> None:
        """A batch of `items` came back: `done` of them finished, `again` must be redone."""
        with self.lock:
            self.bar.total += again
            self.bar.update(max(items - self.in_flight, 0.0))
            self.in_flight = 0.0
            self.bar.done += done
            self.bar.refresh()

    def set_postfix_str(self, text: str) -> None:
        self.bar.set_postfix_str(text)
