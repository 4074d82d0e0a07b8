"""One bakery run per project at a time: an exclusive flock on build/bakery.lock.

Two bakes of one project would both do all the work, and with random noise or an API text
backend their outputs would mix. Every command that writes (bake and each stage, deploy,
archive, mirror-config) takes the lock; a second run names the holder (pid, command, since)
and exits 2, or waits for it with --wait. The kernel drops the lock when its holder dies, even
by kill -9, so a stale lock never blocks anyone; the holder line left in the file is only
read while someone holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator

from bakery.errors import BakeryError

log = logging.getLogger("bakery")

LOCK_NAME = "bakery.lock"
# Commands that write into (or clean) build/ or public/, or publish them; serve and figures only read
# (figures writes its sheets atomically and may run beside a bake).
LOCKED_COMMANDS = frozenset({"bake", "images", "generate", "upscale", "compress", "text", "site",
                             "deploy", "archive", "mirror-config", "merge", "clean"})


class LockHeld(BakeryError):
    """Another bakery run holds this project's lock."""

    exit_code = 2


def describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} ({info['command']}), since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet said who it is"


def _open_locked(path: Path, wait: bool) -> int:
    """An fd of `path` holding its exclusive lock. The file may have been removed by a run that
    created build/ and wrote nothing (see project_lock): a lock on a removed file's fd is
    worthless, so the fd's file must still be the one at `path`."""
    announced = False
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                os.close(fd)
                raise LockHeld(f"{path}: another bakery run is working on this project: "
                               f"{describe_holder(path)}; wait for it to finish or rerun with --wait") from None
            if not announced:
                log.warning("waiting for the project lock %s, held by %s", path, describe_holder(path))
                announced = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def project_lock(build_dir: Path, command: str, wait: bool = False) -> Iterator[None]:
    """Hold build_dir/bakery.lock for the block; raises LockHeld if another run holds it."""
    created = not build_dir.exists()
    path = build_dir / LOCK_NAME
    fd = _open_locked(path, wait)
    try:
        holder = {"pid": os.getpid(), "command": command,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        yield
    finally:
        # A run that failed before writing anything (say, a missing model) leaves no build/.
        # (`bakery clean` may have removed both already.)
        with contextlib.suppress(OSError):
            if created and [p.name for p in build_dir.iterdir()] == [LOCK_NAME]:
                path.unlink()
                build_dir.rmdir()
        os.close(fd)


def command_line(argv: list[str] | None) -> str:
    words = sys.argv[1:] if argv is None else argv
    return " ".join(["bakery", *words])


@contextlib.contextmanager
def locked_command(config, args, argv: list[str] | None = None) -> Iterator[None]:
    """For a command that writes: take the project lock, then sweep stale temp files (safe now
    that no other run can be mid-write). Other commands run unlocked."""
    if args.command not in LOCKED_COMMANDS:
        yield
        return
    from bakery.cleanup import remove_all_stale_temps

    with project_lock(config.build_dir, command_line(argv), wait=getattr(args, "wait", False)):
        remove_all_stale_temps(config)
        yield
