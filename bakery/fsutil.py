"""Crash-safe file writes: every write goes to a temp file in the same directory, then is renamed."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from bakery.testhook import crash_point


class WriteError(OSError):
    """An OSError while writing `filename` through atomic_open, which the OS raised naming no
    file (a failed write or fsync names none). For a full disk it says how much space the
    file needed (`needed` bytes: exact with `needed_exact`, else what had gone in when the
    disk filled, a lower bound) and how much the disk had (`free` bytes, once the temp file
    was removed: what this file could have used)."""

    needed: int | None = None
    needed_exact: bool = False
    free: int | None = None


SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def write_error(exc: OSError, path: Path, size: int | None, written: int | None) -> OSError:
    """`exc` naming `path` (unless it already names a file: a source that could not be read)."""
    if exc.filename is not None and exc.errno not in SPACE_ERRNOS:
        return exc
    error = WriteError(exc.errno, exc.strerror, str(path))
    if exc.errno in SPACE_ERRNOS:
        error.needed, error.needed_exact = (size, True) if size is not None else (written, False)
        with contextlib.suppress(OSError):
            error.free = shutil.disk_usage(path.parent).free
    return error


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb", encoding: str | None = None,
                size: int | None = None) -> Iterator[IO]:
    """Open a temp file next to `path`; on clean exit fsync and rename it over `path`.

    On an exception the temp file is removed and `path` is left untouched, so a reader
    never sees a half-written file and a killed process leaves at most a stray `.tmp-*`.
    An OSError of the write itself comes out as a WriteError naming `path` (and, for a full
    disk, the space needed, `size` bytes when the caller knows it, and free).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    except OSError as exc:
        raise write_error(exc, path, size, None) from exc
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        crash_point(f"rename:{path.name}")  # test hook: the temp file is whole, not yet renamed
        os.replace(tmp, path)
    except OSError as exc:
        written = temp_size(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise write_error(exc, path, size, written) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temp_size(tmp: str) -> int | None:
    try:
        return os.stat(tmp).st_size
    except OSError:
        return None


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb", size=len(data)) as fh:
        fh.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    with atomic_open(path, "wb", size=len(data)) as fh:
        fh.write(data)


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
