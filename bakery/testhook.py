"""Deterministic crash points for the crash test (tests/test_crash.py), and nothing else.

BAKERY_TEST_KILL_AT is a comma-separated list of point names; when the running process reaches
a named point it kills itself with SIGKILL, exactly as `kill -9` would, at a chosen item rather
than at a random moment. The points:

- `<stage>:<ID>` (stage: generate, upscale, compress, text): the output of that ID is in
  place, its journal line is not yet written (the worst moment for resuming);
- `rename:<file name>`: a temp file is fully written and about to be renamed over that name.

This function is the only place that reads the variable; it is unset in normal use.
"""

from __future__ import annotations

import os
import signal

KILL_AT_ENV = "BAKERY_TEST_KILL_AT"


def crash_point(name: str) -> None:
    wanted = os.environ.get(KILL_AT_ENV)
    if wanted and name in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
