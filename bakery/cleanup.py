"""One sweep of the temp files that interrupted writes leave behind, in every folder the bakery
writes and nowhere else.

Every write goes to `.tmp-<name>.*` next to its target (bakery/fsutil.py); a kill before the
rename leaves that file. The sweep runs once per command, right after the project lock is
taken (bakery/lock.py): only then can no other bakery run be writing a temp file of its own.
It never recurses: archived generations (public/vN/), the user's own folders and custom
--out folders are left alone.

`bakery clean` (what `make clean` runs) removes the current generation's outputs and keeps
the archived ones (build/archive/vN/, public/vN/), which docs/deploy.md promises are kept;
`--archives` (`make distclean`) removes those too.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bakery.fsutil import remove_stale_temps

log = logging.getLogger("bakery")

# build/ subfolders the stages write (raw, upscaled: images; compress, text, site: manifests and
# snippets; deploy: the S3 state; figures: contact sheets)
BUILD_FOLDERS = ("raw", "upscaled", "compress", "text", "site", "deploy", "figures")
PUBLIC_FOLDERS = ("assets",)


def written_folders(config) -> list[Path]:
    """Every folder the bakery writes into for this project (build/ itself holds rsyncd.conf)."""
    build, public = config.build_dir, config.public_dir
    return ([build] + [build / name for name in BUILD_FOLDERS]
            + [public] + [public / name for name in PUBLIC_FOLDERS])


def remove_all_stale_temps(config) -> int:
    removed = sum(remove_stale_temps(folder) for folder in written_folders(config))
    if removed:
        log.info("removed %d temp file(s) left by an interrupted run", removed)
    return removed


# --- `bakery clean` (`make clean`): the current generation's outputs, never its archives ----------

ARCHIVE_FOLDER = "archive"  # build/archive/vN: the intermediates `bakery archive vN` moved aside


@dataclass
class Cleaned:
    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # archived generations left in place


def archived(config) -> list[Path]:
    """The archived generations: build/archive/ and every folder in public/ but assets/
    (public/vN/ from `bakery archive vN`, and a .archiving-vN/ an interrupted archive left:
    its files are the only copy of that generation)."""
    build, public = config.build_dir, config.public_dir
    kept = [build / ARCHIVE_FOLDER] if (build / ARCHIVE_FOLDER).exists() else []
    if public.is_dir():
        kept += sorted(p for p in public.iterdir() if p.is_dir() and not p.is_symlink() and p.name not in PUBLIC_FOLDERS)
    return kept


def remove_path(path: Path) -> None:
    """A file or symlink is unlinked (a link's target is never touched), a folder removed whole."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def clean_outputs(config, archives: bool = False) -> Cleaned:
    """Remove what the bakery made in build/ and public/ for the current generation: every
    stage reruns from scratch afterwards. Archived generations stay unless `archives`; the
    project lock file goes last, while this run still holds it."""
    from bakery.lock import LOCK_NAME

    result = Cleaned(kept=[] if archives else archived(config))
    keep = set(result.kept)
    for folder in (config.build_dir, config.public_dir):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path in keep or (folder == config.build_dir and path.name == LOCK_NAME):
                continue
            remove_path(path)
            result.removed.append(path)
    public = config.public_dir
    if public.is_dir() and not any(public.iterdir()):
        public.rmdir()
    lock = config.build_dir / LOCK_NAME
    if lock.is_file():
        lock.unlink()  # while still holding it, as bakery/lock.py does: a run waiting for it retries
    if config.build_dir.is_dir() and not any(config.build_dir.iterdir()):
        config.build_dir.rmdir()
    return result


def run_clean(config, args) -> None:
    result = clean_outputs(config, archives=args.archives)
    log.info("clean: removed %d item(s) from %s and %s", len(result.removed), config.build_dir, config.public_dir)
    if result.kept:
        log.info("clean: kept the archived generation(s) %s (`bakery clean --archives`, or "
                 "`make distclean`, deletes them too)", ", ".join(map(str, result.kept)))
