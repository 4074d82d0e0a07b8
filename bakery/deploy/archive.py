"""`bakery archive vN`: move the current generation aside before baking a new one.

What moves, all by rename (no copies, nothing deleted):
  public/example-*.jpg, public/snippet-*.txt, public/snippets.tar.gz → public/vN/
      still deployed to S3 and mirrored by rsync, but the page (built from public/'s top
      level only) no longer references them;
  build/<dir> for each deploy.archive.build_dirs entry (raw, upscaled, compress, text)
      → build/archive/vN/<dir>
      the intermediates must go too: every stage skips IDs whose outputs exist, so leaving
      them would make the next bake re-publish the old generation. Keeping them (instead of
      deleting) lets a generation be restored by moving the folders back.

Crash safety: files are renamed into public/.archiving-vN/ first and that folder is renamed
to public/vN/ last, so public/vN/ appears complete or not at all; rerunning the same command
after a crash resumes where it stopped. An existing public/vN/ is never touched.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from bakery.errors import BakeryError

log = logging.getLogger("bakery.deploy")

GENERATION_FILES = (re.compile(r"^example-\d+\.jpg$"), re.compile(r"^snippet-\d+\.txt$"),
                    re.compile(r"^snippets\.tar\.gz$"))
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # used with fullmatch: "$" admits a final "\n"
RESERVED = {"assets", "index.html", "archive"}
STAGING_PREFIX = ".archiving-"


def generation_files(public: Path) -> list[Path]:
    if not public.is_dir():
        return []
    return sorted(p for p in public.iterdir() if p.is_file() and any(r.match(p.name) for r in GENERATION_FILES))


def check_name(name: str) -> None:
    # Case-insensitive: on a case-insensitive disk or CDN path "Assets" is "assets".
    if not NAME_RE.fullmatch(name) or name.lower() in RESERVED:
        raise BakeryError(f"archive: invalid version name {name!r}: use letters, digits, '.', '_', '-' "
                          f"(e.g. v1), not one of {', '.join(sorted(RESERVED))}")


def move_build_dirs(config, name: str) -> list[str]:
    moved = []
    target_root = config.build_dir / "archive" / name
    for d in config.deploy.archive.build_dirs:
        src, dst = config.build_dir / d, target_root / d
        if not src.exists():
            continue
        if dst.exists():
            raise BakeryError(f"{dst}: already exists while {src} does too: move one of them by hand")
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
        moved.append(d)
    return moved


def archive(config, name: str) -> dict:
    check_name(name)
    public = config.public_dir
    final = public / name
    if final.exists():
        raise BakeryError(f"{final}: already exists: archives are never overwritten, choose another name")
    staging = public / f"{STAGING_PREFIX}{name}"
    resuming = staging.is_dir()
    files = generation_files(public)
    build_dirs = [d for d in config.deploy.archive.build_dirs if (config.build_dir / d).exists()]
    if not files and not build_dirs and not resuming:
        raise BakeryError(f"{public}: nothing to archive (no example-*.jpg, snippet-*.txt or build intermediates)")
    if resuming:
        log.info("archive: resuming an interrupted archive into %s", final)
    staging.mkdir(parents=True, exist_ok=True)

    moved_dirs = move_build_dirs(config, name)
    for path in files:
        os.rename(path, staging / path.name)
    os.rename(staging, final)  # the version appears complete, in one step
    counts = {"images": sum(1 for p in final.glob("example-*.jpg")),
              "snippets": sum(1 for p in final.glob("snippet-*.txt")), "build_dirs": moved_dirs}
    log.info("archive: %d images and %d snippets now in %s; build/%s moved to %s", counts["images"],
             counts["snippets"], final, "{" + ",".join(moved_dirs) + "}" if moved_dirs else "(nothing)",
             config.build_dir / "archive" / name)
    if (public / "index.html").is_file():
        log.warning("archive: %s still lists the archived pairs: bake the new generation "
                    "(`bakery bake`) before the next deploy", public / "index.html")
    return counts


def run_archive(config, args) -> None:
    archive(config, args.name)
