"""Cheap checks that a finished output is still the file its stage wrote.

Every stage records, per item, the output's size and sha256 when it writes it (in its
journal, then its manifest). Before an item is skipped as done, the file on disk must still
have that size and hash: a truncated, altered or replaced file does not verify and is redone.
Hashing is far cheaper than the work it guards (a 1 MB PNG hashes in about a millisecond),
and it catches changes a decode check misses (a JPEG with altered bytes still decodes).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from bakery.fsutil import sha256_file
from bakery.journal import replay_any

log = logging.getLogger("bakery.verify")


def record_of(data: bytes) -> dict:
    """The verification fields of an output about to be written from `data`."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def record_file(path: Path) -> dict:
    """The verification fields of a file already on disk."""
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def verifies(path: Path, record: dict | None) -> bool:
    """True when `path` is a regular file with the recorded size and sha256."""
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return False
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size != record.get("bytes"):
            return False
        return sha256_file(path) == record["sha256"]
    except OSError:
        return False


# --- what `bakery site` may publish ------------------------------------------------------------


def stage_records(manifest_path: Path, key: str, journal_path: Path) -> dict[str, dict] | None:
    """A stage's per-item records (manifest + journal), or None when the stage never ran here.

    For publishing, the settings the items were made with do not matter, only that each file is
    still what its stage wrote, so journal records count whatever settings they carry.
    """
    records = None
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        items = data.get(key) if isinstance(data, dict) else None
        records = {str(k): v for k, v in items.items() if isinstance(v, dict)} if isinstance(items, dict) else {}
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        records = {}  # a damaged manifest vouches for nothing
    journal = replay_any(journal_path)
    if journal:
        records = {**(records or {}), **journal}
    return records


def jpeg_looks_whole(path: Path) -> bool:
    """For JPEGs no stage recorded (brought in by hand): starts with SOI and ends with EOI."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(3)
            fh.seek(-2, 2)
            return head == b"\xff\xd8\xff" and fh.read(2) == b"\xff\xd9"
    except OSError:
        return False


def verified_pair_ids(config, images: dict[int, Path], snippets: dict[int, Path]) -> list[int]:
    """IDs whose public JPEG and build/text snippet both verify against their stage's records.

    Files from a stage that never ran in this project (no manifest and no journal: images or
    snippets made elsewhere) cannot be checked against records; JPEGs are then checked for a
    whole file structure and snippets for being non-empty. A stage that did run vouches only
    for the files it recorded.
    """
    build = config.build_dir
    jpegs = stage_records(build / "compress" / "manifest.json", "done", build / "compress" / "journal.jsonl")
    texts = stage_records(build / "text" / "manifest.json", "snippets", build / "text" / "journal.jsonl")
    ids, refused = [], []
    for i in sorted(images.keys() & snippets.keys()):
        image_ok = jpeg_looks_whole(images[i]) if jpegs is None else verifies(images[i], jpegs.get(str(i)))
        text_ok = True if texts is None else verifies(snippets[i], texts.get(str(i)))
        (ids if image_ok and text_ok else refused).append(i)
    if refused:
        shown = ", ".join(map(str, refused[:10])) + (" …" if len(refused) > 10 else "")
        log.warning("site: %d pair(s) not published: the image or snippet is not what its stage wrote "
                    "(truncated, altered or unrecorded; rerun the stage to redo it): ID %s", len(refused), shown)
    return ids
