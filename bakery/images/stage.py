"""`bakery generate`: render every configured seed to build/raw/example-{ID}.png, resumably.

build/raw/manifest.json records, per ID, the checkpoint's sha256 and the seed, psi, noise
mode and truncation cutoff it was rendered with, plus the PNG's size. A rerun skips IDs
whose PNG and record match the config; an ID whose model, psi, noise mode or cutoff
changed, or whose PNG is missing or the wrong size, is rendered again. PNGs are written
atomically, so a kill -9 leaves whole files or none; the manifest is saved every few
seconds and at the end, and an ID rendered but not yet recorded is simply redone.
"""

from __future__ import annotations

import io
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bakery.errors import BakeryError
from bakery.fsutil import remove_stale_temps, write_bytes_atomic, write_json_atomic
from bakery.images.config import EMBEDDED_MODEL, MAX_BATCH
from bakery.progress import progress, spinner

log = logging.getLogger("bakery.images")

EMBEDDED_PATH = Path(__file__).resolve().parent / "data" / "demo_stylegan2_256.pkl"
MANIFEST_VERSION = 1
MANIFEST_SAVE_SECONDS = 5.0


def resolve_model(cfg) -> Path:
    """images.model → a checkpoint path ("embedded" is the demo pickle shipped in the package)."""
    path = EMBEDDED_PATH if cfg.model == EMBEDDED_MODEL else Path(cfg.model)
    if not path.is_file():
        what = "the embedded demo checkpoint (reinstall the package)" if cfg.model == EMBEDDED_MODEL else "file"
        raise BakeryError(f"images.model: {what} not found: {path}")
    return path


def image_path(raw_dir: Path, image_id: int) -> Path:
    return raw_dir / f"example-{image_id}.png"


def wanted_record(band, seed: int, sha256: str, cutoff) -> dict:
    return {"seed": seed, "psi": band.psi, "noise": band.noise, "truncation_cutoff": cutoff,
            "model_sha256": sha256}


def load_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("images: %s is unreadable; every image will be checked again", path)
        return {}
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return {}
    images = data.get("images")
    return images if isinstance(images, dict) else {}


def is_done(raw_dir: Path, image_id: int, record: dict | None, wanted: dict) -> bool:
    if not record or any(record.get(k) != v for k, v in wanted.items()):
        return False
    try:
        return image_path(raw_dir, image_id).stat().st_size == record.get("bytes")
    except FileNotFoundError:
        return False


def encode_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_batch(raw_dir: Path, ids: list[int], pixels: np.ndarray) -> list[int]:
    sizes = []
    for image_id, image in zip(ids, pixels):
        data = encode_png(image)
        write_bytes_atomic(image_path(raw_dir, image_id), data)
        sizes.append(len(data))
    return sizes


def batch_size_of(cfg, args) -> int:
    override = getattr(args, "batch_size", None)
    if override is not None and not 1 <= override <= MAX_BATCH:
        raise BakeryError(f"--batch-size must be between 1 and {MAX_BATCH}, got {override}")
    return override or cfg.batch_size


def run_generate(config, args) -> None:
    cfg = config.images
    raw_dir = config.build_dir / "raw"
    manifest_path = raw_dir / "manifest.json"
    model_path = resolve_model(cfg)
    batch = batch_size_of(cfg, args)
    from bakery.images.pickle_loader import sha256_of

    sha256 = sha256_of(model_path)
    remove_stale_temps(raw_dir)
    records = load_manifest(manifest_path)
    wanted = {i: wanted_record(band, i, sha256, cfg.truncation_cutoff) for band in cfg.bands for i in band.ids}
    todo = [i for i, w in wanted.items() if not is_done(raw_dir, i, records.get(str(i)), w)]
    log.info("images: %d of %d to render (%d already done), model %s (sha256 %s…), batch %d",
             len(todo), len(wanted), len(wanted) - len(todo), model_path.name, sha256[:12], batch)
    if not todo:
        return

    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer

    with spinner(f"loading {model_path.name}", quiet=args.quiet):
        model = load_generator(model_path)
    if model.sha256 != sha256:
        raise BakeryError(f"images.model: {model_path} changed while the stage was starting; run it again")
    renderer = Renderer(model.generator, cfg.truncation_cutoff)
    log.info("images: %s, %d px, %d W rows (truncating the first %d), on %s", model.generator.kind,
             model.generator.resolution, model.generator.num_ws, renderer.cutoff, renderer.device)

    def save_manifest():
        write_json_atomic(manifest_path, {
            "version": MANIFEST_VERSION, "model": str(cfg.model), "model_path": str(model_path),
            "model_sha256": sha256, "generator": model.generator.kind,
            "resolution": model.generator.resolution, "images": records})

    bar = progress(None, desc="images", total=len(todo), unit="img", quiet=args.quiet)
    last_save = time.monotonic()
    # One writer thread encodes and writes PNGs while TensorFlow renders the next batch.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        try:
            for start in range(0, len(todo), batch):
                ids = todo[start:start + batch]
                with spinner("tracing the generator graph", quiet=args.quiet or start > 0, delay=1.0):
                    out = renderer.render_seeds(ids, [wanted[i]["psi"] for i in ids], [wanted[i]["noise"] for i in ids])
                if pending is not None:
                    _record(records, wanted, *pending[0], pending[1].result())
                    bar.update(len(pending[0][0]))
                pending = ((ids,), writer.submit(write_batch, raw_dir, ids, out["uint8"]))
                if time.monotonic() - last_save > MANIFEST_SAVE_SECONDS:
                    save_manifest()
                    last_save = time.monotonic()
            if pending is not None:
                _record(records, wanted, *pending[0], pending[1].result())
                bar.update(len(pending[0][0]))
        finally:
            bar.close()
            save_manifest()
    log.info("images: rendered %d image(s) into %s", len(todo), raw_dir)


def _record(records: dict, wanted: dict, ids: list[int], sizes: list[int]) -> None:
    for image_id, size in zip(ids, sizes):
        records[str(image_id)] = {**wanted[image_id], "bytes": size}
