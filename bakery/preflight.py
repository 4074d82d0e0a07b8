"""Checks before a stage starts work, and one-line messages for the OS errors that still happen.

A read-only or full `build/` or `public/` used to surface as a traceback after the first batch
was rendered; `ensure_writable` finds it before any work, and `describe_os_error` turns an
OSError that happens anyway (the disk fills up mid-run) into one line naming the path.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from bakery.errors import BakeryError

HINTS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOTDIR: "a path component is a file, not a folder",
    errno.EEXIST: "a file is in the way",
}


class OutputNotWritable(BakeryError):
    exit_code = 1


def describe_os_error(exc: OSError, what: str = "") -> str:
    """OSError → "PATH: read-only file system (while writing the output folder)"."""
    reason = HINTS.get(exc.errno) or exc.strerror or type(exc).__name__
    path = exc.filename if exc.filename is not None else "?"
    if exc.filename2 is not None:
        path = f"{path} → {exc.filename2}"
    return f"{path}: {reason}" + (f" ({what})" if what else "")


def ensure_writable(folder: Path, what: str = "output folder") -> Path:
    """Prove a file can be written in `folder` (or, when it does not exist yet, in the nearest
    existing folder above it, which is where it will be created); else one clear error.

    The probe is a real write (an empty temp file, created and removed at once), since
    permission bits do not reveal read-only mounts or ACLs. Nothing is left behind.
    """
    folder = Path(folder)
    probe_dir = folder
    while not probe_dir.exists() and probe_dir.parent != probe_dir:
        probe_dir = probe_dir.parent
    try:
        if not probe_dir.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(probe_dir))
        fd, probe = tempfile.mkstemp(prefix=".tmp-write-check.", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        exc.filename = str(folder if probe_dir == folder else probe_dir)
        raise OutputNotWritable(f"cannot write the {what} {folder}: {describe_os_error(exc)}") from None
    return folder
