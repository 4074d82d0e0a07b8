"""Deterministic crash and pause points for the tests (tests/test_crash.py, tests/test_ray_head.py),
and nothing else.

BAKERY_TEST_KILL_AT is a comma-separated list of point names; when the running process reaches
a named point it kills itself with SIGKILL, exactly as `kill -9` would, at a chosen item rather
than at a random moment. BAKERY_TEST_PAUSE_AT names one point and BAKERY_TEST_PAUSE_FILE a
path: at that point the process creates the file and waits (at most PAUSE_LIMIT_S) until the
test removes it, so the test can break something (stop a Ray head) at an exact moment. The
points:

- `<stage>:<ID>` (stage: generate, upscale, compress, text): the output of that ID is in
  place, its journal line is not yet written (the worst moment for resuming);
- `rename:<file name>`: a temp file is fully written and about to be renamed over that name;
- `ray:<stage>`: a Ray worker is about to compute a batch of that stage.

This module is the only place that reads these variables; they are unset in normal use.
"""

from __future__ import annotations

import os
import signal
import time

KILL_AT_ENV = "BAKERY_TEST_KILL_AT"
PAUSE_AT_ENV = "BAKERY_TEST_PAUSE_AT"
PAUSE_FILE_ENV = "BAKERY_TEST_PAUSE_FILE"
PAUSE_LIMIT_S = 120


def crash_point(name: str) -> None:
    wanted = os.environ.get(KILL_AT_ENV)
    if wanted and name in wanted.split(","):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSE_AT_ENV) == name and os.environ.get(PAUSE_FILE_ENV):
        pause(os.environ[PAUSE_FILE_ENV])


def pause(flag: str) -> None:
    """Create `flag` and wait until it is gone (the test removes it once it has acted)."""
    with open(flag, "w") as fh:
        fh.write(str(os.getpid()))
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.05)
