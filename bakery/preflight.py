"""Checks before a stage starts work, and one-line messages for the OS errors that still happen.

A read-only or full `build/` or `public/` used to surface as a traceback after the first batch
was rendered; `ensure_writable` finds it before any work, and `describe_os_error` turns an
OSError that happens anyway (the disk fills up mid-run) into one line naming the path.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from bakery.errors import BakeryError
from bakery.sizes import human_bytes

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


def describe_stage_os_error(exc: OSError, stage: str | None, folders=()) -> str:
    """An OSError that ended a stage, as one line naming the stage and what it was writing:

    "generate: cannot write build/raw/example-26.png: no space left on device (it needed
    12.0 KB; 4.0 KB free there)"; an error that names no file names the stage's output
    folders instead, with their free space when the disk is full.
    """
    from bakery.fsutil import SPACE_ERRNOS, WriteError

    lead = f"{stage}: " if stage else ""
    exc = first_of_cascade(exc)
    if isinstance(exc, WriteError):
        return f"{lead}cannot write {describe_os_error(exc)}{space_note(exc)}"
    if exc.filename is not None:
        return f"{lead}{describe_os_error(exc)}"
    reason = HINTS.get(exc.errno) or exc.strerror or type(exc).__name__
    folders = [Path(f) for f in folders]
    if not folders:
        return f"{lead}{reason}"
    where = ", ".join(str(f) for f in folders)
    if exc.errno in SPACE_ERRNOS:
        free = [free_space(f) for f in folders]
        where = ", ".join(f"{f} ({human_bytes(n)} free)" if n is not None else str(f) for f, n in zip(folders, free))
    return f"{lead}{reason} while writing into {where}"


def first_of_cascade(exc: OSError) -> OSError:
    """A full disk fails a stage's write, then the manifest its finally block saves: report
    the first write that failed (the later one's context chain holds it)."""
    from bakery.fsutil import WriteError

    first, seen, earlier = exc, {id(exc)}, exc.__context__
    while earlier is not None and id(earlier) not in seen:
        seen.add(id(earlier))
        if isinstance(earlier, WriteError) and earlier.errno == exc.errno:
            first = earlier
        earlier = earlier.__context__
    return first


def space_note(exc) -> str:
    """" (it needed 12.0 KB; 4.0 KB free there)" for a WriteError of a full disk, else ""."""
    parts = []
    if exc.needed:
        parts.append(f"it needed {'' if exc.needed_exact else 'more than '}{human_bytes(exc.needed)}")
    if exc.free is not None:
        parts.append(f"{human_bytes(exc.free)} free there")
    return f" ({'; '.join(parts)})" if parts else ""


def free_space(folder: Path) -> int | None:
    """Free bytes on the disk of `folder` (or of the nearest existing folder above it)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


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
