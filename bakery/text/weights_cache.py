"""A cache of converted models: a GGUF file is dequantized once, then loaded from safetensors.

transformers turns a GGUF file into float tensors on every load (about 25 s for the 100 MB
SmolLM2-135M on 2 cores with its plain loader, about 4 s with the file parsed once,
gguf_once.py); loading the same tensors from safetensors takes about a second.
So the first load of a GGUF file saves the loaded model and tokenizer with
`save_pretrained` into one folder of the cache, and later runs (and every scale-out worker
that shares the folder) load that folder instead.

- Key: the source file's sha256, the dtype, and the transformers and torch versions (a
  new release may convert differently), hashed into `KEY`. Another file, dtype or version
  is another entry; nothing is ever overwritten.
- Named by its content: the entry folder is `KEY.DIGEST`, DIGEST the sha256 of its
  `entry.json` (which lists each file's size and sha256). So `entry.json` cannot vouch for
  itself: weights swapped together with a rewritten `entry.json` no longer match the
  folder's name.
- Atomic: an entry is written into a `.tmp-*` folder beside it and renamed into place
  whole, with `entry.json` written last; a killed writer leaves at most a `.tmp-*` folder,
  removed by the next writer. Two writers racing for the same entry: the first rename
  wins, the other's copy is dropped.
- Verified on use: the folder and its files are real (no symlinks), owned by this user and
  writable by no one else; exactly the listed files are there (nothing unlisted), each with
  its recorded size and sha256; `entry.json` hashes to the folder's name; the folder loads.
  A damaged entry (truncated, altered, half-deleted, unloadable, extra or linked files) is
  deleted (a link is unlinked, never followed) and rebuilt from the source, never trusted.
- The cache root must not be writable by other users (anyone who can write there can put a
  model in front of you): such a root is refused with one line.
- Safe: safetensors and JSON only; loading runs no code from the cache (as from the GGUF).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from bakery.errors import BakeryError
from bakery.fsutil import sha256_file

log = logging.getLogger("bakery.text")

CACHE_FORMAT = 2  # 2: folders named KEY.DIGEST (format 1 entries, named KEY, are not read)
RECORD_NAME = "entry.json"
STALE_TEMP_S = 6 * 3600  # a `.tmp-*` folder older than this belongs to a writer that died
DIGEST_CHARS = 32  # 128 bits of the record's sha256 in the folder name


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


def entry_name(key: str, record_path: Path) -> str:
    """KEY.DIGEST: the folder's name carries the hash of its record."""
    return f"{key}.{sha256_file(record_path)[:DIGEST_CHARS]}"


def private_problem(path: Path, st: os.stat_result, kind: str) -> str | None:
    """Why `path` (lstat'ed) is not this user's own plain `kind`, or None."""
    is_kind = stat.S_ISDIR(st.st_mode) if kind == "folder" else stat.S_ISREG(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return f"{path.name} is a symbolic link"
    if not is_kind:
        return f"{path.name} is not a plain {kind}"
    if st.st_uid != os.getuid():
        return f"{path.name} belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"{path.name} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def verify_entry(folder: Path) -> str | None:
    """None when the entry is what its writer left, else what is wrong: the folder and every
    file in it this user's own, plain and private; exactly the recorded files, each with its
    size and sha256; and the record hashing to the folder's name."""
    try:
        problem = private_problem(folder, folder.lstat(), "folder")
        if problem:
            return problem
        present = {p.name: p.lstat() for p in folder.iterdir()}
    except OSError as exc:
        return f"cannot read the folder ({exc.strerror or exc})"
    for name, st in present.items():
        problem = private_problem(folder / name, st, "file")
        if problem:
            return problem
    try:
        record = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
        files = record["files"]
        if not isinstance(files, dict) or not files or not all(isinstance(v, dict) for v in files.values()):
            return "no files recorded"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{RECORD_NAME} missing or unreadable"
    key, _, digest = folder.name.rpartition(".")
    if not key or entry_name(key, folder / RECORD_NAME) != folder.name:
        return f"{RECORD_NAME} does not match the folder's name (its content hash)"
    unlisted = sorted(set(present) - set(files) - {RECORD_NAME})
    if unlisted:
        return f"{unlisted[0][:80]!r} is not a file of the entry"
    for name, want in files.items():
        path = folder / name
        if name not in present:
            return f"{name} missing"
        if present[name].st_size != want.get("bytes"):  # cheap check first: a truncated file
            return f"{name} has {present[name].st_size} bytes, {want.get('bytes')} recorded"
        if sha256_file(path) != want.get("sha256"):
            return f"{name} does not match its recorded sha256"
    return None


def remove_entry(folder: Path) -> None:
    """Gone, without following a link: a linked entry loses the link, not what it points to."""
    with contextlib.suppress(OSError):
        if folder.is_symlink() or not folder.is_dir():
            folder.unlink()
            return
    shutil.rmtree(folder, ignore_errors=True)


def check_root(root: Path) -> None:
    """A cache root that other users can write to is refused: whoever can write there can
    put a model in front of this user. Made private (0700) when it does not exist yet."""
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = root.stat()  # a linked root is fine (~/.cache on another disk): its target counts
    except OSError:
        return  # not writable at all: load_cached warns and goes on without the cache
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        who = "another user" if st.st_uid != os.getuid() else "other users"
        raise BakeryError(f"text.model_cache: {root} is writable by {who} (mode {stat.S_IMODE(st.st_mode):o}, "
                          f"owner uid {st.st_uid}): refusing to load models from it; `chmod go-w {root}` "
                          "(if it is yours), or set [text] model_cache to a folder of your own or to false")


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
    """save(folder) writes the model there; the folder is then recorded and renamed into
    place as KEY.DIGEST."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    clean_stale_temps(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}.", dir=root))
    try:
        save(tmp)
        record = {"format": CACHE_FORMAT, **meta, "files": file_records(tmp)}
        (tmp / RECORD_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for p in tmp.iterdir():  # the data is on disk before the rename makes it visible
            os.chmod(p, 0o644)  # not the umask's: verify_entry refuses what others may write
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        final = root / entry_name(key, tmp / RECORD_NAME)
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


def entries_of(root: Path, key: str) -> list[Path]:
    """The folders (or anything else) named KEY.*: verify_entry decides what they are."""
    try:
        return sorted(p for p in root.iterdir() if p.name.startswith(key + "."))
    except OSError:
        return []


def load_cached(root: Path, key: str, meta: dict, build: Callable[[], tuple], load: Callable[[Path], tuple]):
    """(tokenizer, model) from a verified cache entry of `key` under `root`, or built from the
    source with build() and stored for the next run. load(folder) loads a verified entry."""
    check_root(root)
    for folder in entries_of(root, key):
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
        folder = write_entry(root, key, lambda tmp: save_model(model, tokenizer, tmp), meta)
        log.info("text: converted model cached in %s", folder)
    except (OSError, ValueError, RuntimeError) as exc:  # e.g. a full disk: the run goes on uncached
        log.warning("text: cannot write the model cache %s (%s); continuing without it", root, exc)
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
