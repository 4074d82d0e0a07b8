"""What a published file is, for every tool that serves public/: the names never published
and the Content-Type each file gets. `bakery deploy` (bakery/deploy/) uploads with them and
`bakery serve` (bakery/site/serve.py) previews with them, so the preview shows what the
deploy will publish; both import this module and neither imports the other.
"""

from __future__ import annotations

import fnmatch
import mimetypes
import os
import re
from functools import lru_cache

# Leftovers of atomic writes that a crash interrupted (bakery.fsutil) and the staging folder
# of an interrupted `bakery archive`: never published.
ALWAYS_EXCLUDED = (".tmp-*", ".archiving-*")

# Extension → Content-Type where Python's mimetypes is missing or lacks the charset.
DEFAULT_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".gz": "application/gzip",
    ".tar": "application/x-tar",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".ico": "image/x-icon",
    ".xml": "application/xml",
}


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(fnmatch.translate(pattern.lstrip("/")))


def glob_matches(pattern: str, rel: str) -> bool:
    """A glob with "/" matches the whole relative path, one without it only the file name."""
    target = rel if "/" in pattern else rel.rsplit("/", 1)[-1]
    return _compiled(pattern).match(target) is not None


def matches_any(patterns, rel: str) -> bool:
    return any(glob_matches(p, rel) for p in patterns)


def content_type(rel: str, overrides: dict[str, str]) -> str:
    ext = os.path.splitext(rel)[1].lower()
    if ext in overrides:
        return overrides[ext]
    guessed, _ = mimetypes.guess_type(rel, strict=False)
    return guessed or "application/octet-stream"
