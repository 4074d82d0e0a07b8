"""build/deploy/s3-state.json: what the last deploys put in the bucket, per key.

For each key it records the local file's size and mtime when it was uploaded, its MD5, the
ETag the store returned and the headers sent. A file whose size and mtime still match needs
no hashing, and when the listing shows the same ETag the object is known to be current
without a single request per file. The state is only a cache: every decision is checked
against the bucket listing, so a stale or lost state costs time, never correctness.

The one exception is `--trust-state`, which plans from the state instead of a listing. It
only trusts a state marked `complete`: written at the end of a deploy that had no failures.
A deploy that is running, was killed or failed leaves the mark off, so the next one lists.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from bakery.fsutil import atomic_open

log = logging.getLogger("bakery.deploy")

VERSION = 1


@dataclass(frozen=True)
class Entry:
    size: int
    mtime_ns: int
    md5: str  # hex digest of the whole file
    etag: str  # as the store reported it, without quotes
    content_type: str
    cache_control: str | None


def state_path(build_dir: Path) -> Path:
    return build_dir / "deploy" / "s3-state.json"


def target_id(endpoint_url: str | None, bucket: str, prefix: str) -> str:
    return f"{endpoint_url or 'aws'}|{bucket}|{prefix}"


@dataclass
class State:
    entries: dict[str, Entry]
    complete: bool  # the last deploy that wrote it finished with no failures


def load_state(path: Path, target: str) -> State:
    """The recorded entries for this bucket/prefix; empty when missing, unreadable or foreign."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("version") != VERSION or raw.get("target") != target:
            log.info("s3: state file %s belongs to another target or version: starting fresh", path)
            return State({}, False)
        meta = raw["meta"]
        entries = {key: Entry(size, mtime, md5, etag, *meta[m])
                   for key, (size, mtime, md5, etag, m) in raw["objects"].items()}
        return State(entries, raw.get("complete") is True)
    except FileNotFoundError:
        return State({}, False)
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        log.warning("s3: ignoring unreadable state file %s (%s): every object will be re-checked", path, exc)
        return State({}, False)


def save_state(path: Path, target: str, entries: dict[str, Entry], complete: bool = False) -> None:
    """Write compactly and atomically: 100k keys stay a few MB, a crash leaves the old file."""
    meta_index: dict[tuple, int] = {}
    objects = {}
    for key in sorted(entries):
        e = entries[key]
        m = meta_index.setdefault((e.content_type, e.cache_control), len(meta_index))
        objects[key] = [e.size, e.mtime_ns, e.md5, e.etag, m]
    doc = {"version": VERSION, "target": target, "complete": complete,
           "meta": [list(m) for m in meta_index], "objects": objects}
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, separators=(",", ":"))
