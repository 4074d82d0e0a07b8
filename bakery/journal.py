"""Per-stage journals: one JSON line per finished item, appended the moment it is written.

A stage's manifest is rewritten only at its start and end (rewriting a 100k-entry manifest
after every item would cost more than the items). In between, each finished item is appended
to `journal.jsonl` next to the manifest as one line `{"id": ..., "record": {...}}`, in a single
write() call. The first line is a header naming what the records depend on (for upscale and
compress, the settings); records are taken back only under the same header.

Compaction: at a stage's start the old journal is replayed into the manifest and the manifest
is written before a fresh journal replaces the old one; at its end the manifest is written and
the journal removed. A kill between the two steps replays the same lines again, which is
harmless. A torn last line (a kill mid-write) is ignored: that item simply does not count as
recorded, and its output is verified or redone like any unrecorded file. No fsync: a process
kill keeps the page cache, and after a power loss every record is re-verified against the
file anyway (bakery/verify.py).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from bakery.fsutil import write_error
from bakery.testhook import crash_point

JOURNAL_NAME = "journal.jsonl"


def _lines(path: Path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    return  # torn by a kill mid-write
                try:
                    yield json.loads(line)
                except ValueError:
                    return
    except FileNotFoundError:
        return


def _replay(path: Path, header: dict | None) -> dict[str, dict]:
    records: dict[str, dict] = {}
    lines = _lines(path)
    first = next(lines, None)
    if not isinstance(first, dict) or (header is not None and first.get("header") != header):
        return {}
    for line in lines:
        if isinstance(line, dict) and isinstance(line.get("record"), dict):
            records[str(line.get("id"))] = line["record"]
    return records


def replay(path: Path, header: dict) -> dict[str, dict]:
    """The records of the journal at `path` if it was written under `header` (later lines win)."""
    return _replay(path, header)


def replay_any(path: Path) -> dict[str, dict]:
    """The records of the journal at `path`, whatever its header (for integrity checks only)."""
    return _replay(path, None)


class Journal:
    """An open journal for one stage run; `add` is safe from several threads."""

    def __init__(self, path: Path, header: dict, stage: str):
        self.path, self.stage = Path(path), stage
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self._write({"header": header})

    def _write(self, obj: dict) -> None:
        data = (json.dumps(obj, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                os.write(self._fd, data)
            except OSError as exc:  # the OS names no file for a failed write
                raise write_error(exc, self.path, len(data), None) from exc

    def add(self, item_id, record: dict) -> None:
        crash_point(f"{self.stage}:{item_id}")  # test hook: output written, record not yet
        self._write({"id": str(item_id), "record": record})

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def remove(self) -> None:
        """After the manifest holding every record is written: the journal is no longer needed."""
        self.close()
        self.path.unlink(missing_ok=True)
