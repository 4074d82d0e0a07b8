"""Progress bars and log setup shared by every stage (tqdm, silenced by -q)."""

from __future__ import annotations

import logging
import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("bakery")


def setup_logging(verbosity: int) -> None:
    """verbosity: -1 quiet (warnings only), 0 normal, 1+ debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
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
