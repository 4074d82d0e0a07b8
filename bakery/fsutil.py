"""Crash-safe file writes: every write goes to a temp file in the same directory, then is renamed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

from bakery.testhook import crash_point


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temp file next to `path`; on clean exit fsync and rename it over `path`.

    On an exception the temp file is removed and `path` is left untouched, so a reader
    never sees a half-written file and a killed process leaves at most a stray `.tmp-*`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        crash_point(f"rename:{path.name}")  # test hook: the temp file is whole, not yet renamed
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_json_atomic(path: Path, obj) -> None:
    """allow_nan=False: NaN and inf are not JSON (browsers' JSON.parse refuses them), so a
    non-finite number is a bug to stop at, before anything is written."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (checkpoints can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temps(directory: Path) -> int:
    """Delete `.tmp-*` leftovers of writes that a crash interrupted; returns how many."""
    count = 0
    if directory.is_dir():
        for leftover in directory.glob(".tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
                count += 1
    return count
