"""What visitors can download besides the pairs: the model, the snippets tarball, the mirror.

With `site.publish_model = true` the checkpoint is copied into public/ under a versioned
name (`model-{stem}-{sha256[:12]}.pkl`: a new model never overwrites an old file a CDN may
still cache) and public/downloads.json records each download's file, size and sha256.
The page's footer lists the same downloads with their sizes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from bakery.fsutil import atomic_open, sha256_file, write_json_atomic

VERSIONED_MODEL_RE = re.compile(r"model-[A-Za-z0-9_.-]{0,64}-[0-9a-f]{12}\.pkl")
TARBALL = "snippets.tar.gz"  # written by `bakery mirror-config --snippets-tarball`


def model_file_name(source: Path, digest: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.stem)[:64]
    return f"model-{stem}-{digest[:12]}.pkl"


def publish_model(config) -> dict | None:
    """Copy the configured checkpoint into public/ (once per version); its download record."""
    if not config.site.publish_model:
        return None
    from bakery.images.stage import resolve_model  # numpy only: the site stage never loads TF

    source = resolve_model(config.images)
    digest = sha256_file(source)
    name = model_file_name(source, digest)
    target = config.public_dir / name
    size = source.stat().st_size
    if not (target.is_file() and not target.is_symlink() and target.stat().st_size == size):
        with open(source, "rb") as src, atomic_open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    for old in config.public_dir.iterdir():  # earlier versions: one model on the site at a time
        if old.name != name and VERSIONED_MODEL_RE.fullmatch(old.name) and not old.is_dir():
            old.unlink()
    return {"file": name, "bytes": size, "sha256": digest}


def snippets_tarball(public: Path) -> dict | None:
    path = public / TARBALL
    if path.is_file() and not path.is_symlink():
        return {"file": TARBALL, "bytes": path.stat().st_size}
    return None


def write_downloads(config, mirror_command: str | None) -> dict:
    """public/downloads.json: the model (with sha256), the snippets tarball, the rsync command."""
    downloads = {}
    model = publish_model(config)
    if model:
        downloads["model"] = model
    tarball = snippets_tarball(config.public_dir)
    if tarball:
        downloads["snippets"] = tarball
    if mirror_command:
        downloads["rsync"] = mirror_command
    write_json_atomic(config.public_dir / "downloads.json", downloads)
    return downloads
