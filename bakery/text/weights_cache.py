"""A cache of converted models: a GGUF file is dequantized once, then loaded from safetensors.

transformers turns a GGUF file into float tensors on every load (about 25 s for the 100 MB
SmolLM2-135M on 2 cores with its plain loader, about 4 s with the file parsed once,
gguf_once.py); loading the same tensors from safetensors takes about a second.
So the first load of a GGUF file saves the loaded model and tokenizer with
`save_pretrained` into one folder of the cache, and later runs (and every scale-out worker
that shares the folder) load that folder instead.

- Key: the source file's sha256, the dtype, and the transformers and torch versions (a
  new release may convert differently), hashed into the folder name. Another file, dtype
  or version is another entry; nothing is ever overwritten.
- Atomic: an entry is written into a `.tmp-*` folder beside it and renamed into place
  whole, with `entry.json` (each file's size and sha256) written last; a killed writer
  leaves at most a `.tmp-*` folder, removed by the next writer. Two writers racing for the
  same key: the first rename wins, the other's copy is dropped.
- Verified on use: every file must have the recorded size and sha256, and the folder must
  load. A damaged entry (truncated, altered, half-deleted, unloadable) is deleted and
  rebuilt from the source, never trusted.
- Safe: safetensors and JSON only; loading runs no code from the cache (as from the GGUF).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from bakery.fsutil import sha256_file

log = logging.getLogger("bakery.text")

CACHE_FORMAT = 1
RECORD_NAME = "entry.json"
STALE_TEMP_S = 6 * 3600  # a `.tmp-*` folder older than this belongs to a writer that died


def library_versions() -> dict:
    import transformers

    return {"transformers": transformers.__version__, "torch": torch.__version__}


def entry_key(source_sha256: str, dtype: torch.dtype, versions: dict | None = None) -> str:
    """The entry's folder name: readable start (source hash), exact end (hash of everything)."""
    parts = {"format": CACHE_FORMAT, "source_sha256": source_sha256, "dtype": str(dtype),
             **(versions or library_versions())}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"{source_sha256[:16]}-{digest[:16]}"


def file_records(folder: Path) -> dict:
    return {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != RECORD_NAME}


def verify_entry(folder: Path) -> str | None:
    """None when every recorded file is there with its size and sha256, else what is wrong."""
    try:
        record = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
        files = record["files"]
        if not isinstance(files, dict) or not files:
            return "no files recorded"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{RECORD_NAME} missing or unreadable"
    for name, want in files.items():
        path = folder / name
        if path.is_symlink() or not path.is_file():
            return f"{name} missing"
        if path.stat().st_size != want.get("bytes"):  # cheap check first: a truncated file
            return f"{name} has {path.stat().st_size} bytes, {want.get('bytes')} recorded"
        if sha256_file(path) != want.get("sha256"):
            return f"{name} does not match its recorded sha256"
    return None


def remove_entry(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def clean_stale_temps(root: Path) -> None:
    """Remove `.tmp-*` folders that a killed writer left (old ones only: a live writer's
    folder is young)."""
    now = time.time()
    for leftover in root.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if now - leftover.lstat().st_mtime > STALE_TEMP_S:
                if leftover.is_dir() and not leftover.is_symlink():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink()


def write_entry(root: Path, key: str, save: Callable[[Path], None], meta: dict) -> Path:
    """save(folder) writes the model there; the folder is then recorded and renamed into place."""
    root.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}.", dir=root))
    final = root / key
    try:
        save(tmp)
        record = {"format": CACHE_FORMAT, **meta, "files": file_records(tmp)}
        (tmp / RECORD_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for p in tmp.iterdir():  # the data is on disk before the rename makes it visible
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            log.debug("text: model cache entry %s was written by another process meanwhile", final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_cached(root: Path, key: str, meta: dict, build: Callable[[], tuple], load: Callable[[Path], tuple]):
    """(tokenizer, model) from the cache entry `key` under `root`, or built from the source
    with build() and stored for the next run. load(folder) loads a verified entry."""
    folder = root / key
    if folder.is_dir():
        problem = verify_entry(folder)
        if problem is None:
            try:
                loaded = load(folder)
                log.debug("text: model loaded from cache %s", folder)
                return loaded
            except Exception as exc:  # noqa: BLE001 - any failure: the entry is not trusted
                problem = f"does not load ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})"
        log.warning("text: model cache entry %s is damaged (%s): rebuilding it", folder, problem)
        remove_entry(folder)
    tokenizer, model = build()
    try:
        write_entry(root, key, lambda tmp: save_model(model, tokenizer, tmp), meta)
        log.info("text: converted model cached in %s", folder)
    except (OSError, ValueError, RuntimeError) as exc:  # e.g. a full disk: the run goes on uncached
        log.warning("text: cannot write the model cache %s (%s); continuing without it", folder, exc)
    return tokenizer, model


def save_model(model, tokenizer, folder: Path) -> None:
    """The model as a plain transformers checkpoint. Not model.save_pretrained: transformers
    marks a GGUF-loaded model as quantized and refuses to save it, though its tensors are
    ordinary floats by now."""
    from safetensors.torch import save_file

    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # tied weights (output layer = embeddings): stored once
            continue
        seen.add(tensor.data_ptr())
        tensors[name] = tensor.detach().contiguous()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
