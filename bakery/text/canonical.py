"""One canonical form of the text stage's settings, for the manifest and for comparing runs.

The settings are compared after a JSON round trip (so a tuple in memory equals the list the
manifest loads back) and with paths relative to the project root (so moving the project
folder changes nothing). A path outside the root stays absolute.
"""

from __future__ import annotations

import json
from pathlib import Path


def root_relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except (ValueError, OSError):
            pass
    return str(path)


def canonical(value, root: Path | None = None):
    """JSON-shaped (lists, string keys, sorted), Paths written root-relative."""
    def plain(v):
        if isinstance(v, Path):
            return root_relative(v, root)
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return json.loads(json.dumps(plain(value), sort_keys=True, allow_nan=False))
