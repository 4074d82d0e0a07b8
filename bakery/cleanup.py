"""One sweep of the temp files that interrupted writes leave behind, in every folder the bakery
writes and nowhere else.

Every write goes to `.tmp-<name>.*` next to its target (bakery/fsutil.py); a kill before the
rename leaves that file. The sweep runs once per command, right after the project lock is
taken (bakery/lock.py): only then can no other bakery run be writing a temp file of its own.
It never recurses: archived generations (public/vN/), the user's own folders and custom
--out folders are left alone.
"""

from __future__ import annotations

import logging
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
