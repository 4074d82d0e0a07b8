"""build/deploy/pending-purge.json: CDN purges owed, kept on disk until CloudFlare confirms them.

A purge is owed the moment a deploy is about to overwrite or delete objects, not when it
finishes: the file is written before the first upload, so a purge that fails (no token, a
CloudFlare outage, a killed deploy) is retried by the next deploy, even one that changes
nothing, instead of the CDN serving stale files for a month. Purging a URL that in the end
was not overwritten (its upload failed) costs nothing, so the queue may hold a few extra.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from bakery.fsutil import atomic_open

log = logging.getLogger("bakery.deploy")

VERSION = 1


@dataclass
class PendingPurge:
    zone_id: str
    rels: list[str] = field(default_factory=list)  # paths below public/, in the order first owed
    everything: bool = False  # a --purge-everything that has not succeeded yet

    def __bool__(self) -> bool:
        return bool(self.rels) or self.everything


def queue_path(build_dir: Path) -> Path:
    return build_dir / "deploy" / "pending-purge.json"


def load_pending(build_dir: Path, zone_id: str) -> PendingPurge:
    """What earlier deploys still owe this zone; empty when there is no (readable) queue."""
    path = queue_path(build_dir)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("version") != VERSION or not isinstance(raw.get("rels"), list):
            raise ValueError("unknown format")
        if raw.get("zone_id") != zone_id:
            log.warning("cloudflare: %s lists purges for zone %s, not %s: dropped", path, raw.get("zone_id"), zone_id)
            return PendingPurge(zone_id)
        return PendingPurge(zone_id, [str(r) for r in raw["rels"]], raw.get("everything") is True)
    except FileNotFoundError:
        return PendingPurge(zone_id)
    except (ValueError, AttributeError, UnicodeDecodeError) as exc:
        # Unreadable: the safe reading of "some purge was owed" is "purge everything".
        log.warning("cloudflare: unreadable %s (%s): the whole zone will be purged", path, exc)
        return PendingPurge(zone_id, [], True)


def save_pending(build_dir: Path, pending: PendingPurge) -> None:
    doc = {"version": VERSION, "zone_id": pending.zone_id, "everything": pending.everything,
           "rels": pending.rels}
    with atomic_open(queue_path(build_dir), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=0)


def owe_purge(build_dir: Path, zone_id: str, rels: list[str], everything: bool = False) -> PendingPurge:
    """Add to the queue on disk (before the change it is for) and return the whole queue."""
    pending = load_pending(build_dir, zone_id)
    known = set(pending.rels)
    pending.rels += [r for r in dict.fromkeys(rels) if r not in known]
    pending.everything = pending.everything or everything
    if pending:
        save_pending(build_dir, pending)
    return pending


def purge_done(build_dir: Path) -> None:
    queue_path(build_dir).unlink(missing_ok=True)
