"""The local side of a deploy: which files public/ holds, and the headers each one gets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bakery.errors import BakeryError
from bakery.published import ALWAYS_EXCLUDED, content_type, glob_matches, matches_any  # noqa: F401 (deploy's names)


@dataclass(frozen=True)
class LocalFile:
    rel: str  # path below public/, "/"-separated
    path: str  # absolute; a str, not a Path: building 100k Path objects is measurable
    size: int
    mtime_ns: int


def scan_tree(root: Path, exclude: tuple[str, ...] = ()) -> list[LocalFile]:
    """Every regular file under root, sorted by relative path.

    os.scandir gives the size and mtime from one stat per file, which is what makes a
    no-change deploy of 100k files cheap on the local side. A symlink is followed only when
    it names a regular file inside root: a link out of the folder (say to /etc) or to a
    folder (a loop, or a tree from elsewhere) stops the deploy with its name.
    """
    real_root = os.path.realpath(root)
    patterns = ALWAYS_EXCLUDED + tuple(exclude)
    found: list[LocalFile] = []
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if matches_any(patterns, rel):
                    continue
                if entry.is_symlink():
                    check_symlink(entry.path, rel, real_root)
                if entry.is_dir():
                    stack.append((entry.path, rel + "/"))
                elif entry.is_file():
                    st = entry.stat()
                    found.append(LocalFile(rel, entry.path, st.st_size, st.st_mtime_ns))
    found.sort(key=lambda f: f.rel)
    return found


def check_symlink(path: str, rel: str, real_root: str) -> None:
    target = os.path.realpath(path)
    inside = os.path.commonpath([real_root, target]) == real_root
    if not inside or not os.path.isfile(target):
        what = "outside the published folder" if not inside else "not a regular file"
        raise BakeryError(f"deploy: {rel} is a symlink to {target}, {what}: refusing to follow it "
                          "(replace it with the file itself, or remove it)")


def cache_control(rel: str, rules: dict[str, str]) -> str | None:
    for pattern, value in rules.items():
        if glob_matches(pattern, rel):
            return value
    return None
