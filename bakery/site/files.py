"""Which files in a folder are published pairs' files: canonical names, regular files only.

Only `example-{ID}.jpg` and `snippet-{ID}.txt` with ASCII digits and no leading zeros count
(so `snippet-0001.txt` or a name with Arabic-Indic digits can never stand in for ID 1), and
only regular files inside the folder: a symbolic link would publish whatever it points at
(`/etc/passwd`), so one with a canonical name stops the build with an error naming it.
"""

from __future__ import annotations

import re
from pathlib import Path

from bakery.errors import BakeryError

# [0-9], not \d: \d also matches non-ASCII digits, which int() would happily parse.
IMAGE_RE = re.compile(r"example-(0|[1-9][0-9]{0,9})\.jpg")
SNIPPET_RE = re.compile(r"snippet-(0|[1-9][0-9]{0,9})\.txt")


def canonical_id(name: str, pattern: re.Pattern) -> int | None:
    """The ID in a canonical file name, or None for any other name."""
    m = pattern.fullmatch(name)
    return int(m.group(1)) if m else None


def refuse_link(entry: Path) -> None:
    """A symlink named like a published file: never followed, always an error naming it."""
    try:
        target = str(entry.readlink())
    except OSError:
        target = "?"
    raise BakeryError(f"{entry}: is a symbolic link (to {target}); only regular files are published "
                      "(replace the link with the file itself)")


def canonical_files(directory: Path, pattern: re.Pattern) -> dict[int, Path]:
    """ID → path of each non-empty regular file in `directory` whose name is canonical."""
    found: dict[int, Path] = {}
    if not directory.is_dir():
        return found
    for entry in directory.iterdir():
        image_id = canonical_id(entry.name, pattern)
        if image_id is None:
            continue
        if entry.is_symlink():
            refuse_link(entry)
        stat = entry.lstat()
        if entry.is_file() and stat.st_size > 0:
            found[image_id] = entry
    return found
