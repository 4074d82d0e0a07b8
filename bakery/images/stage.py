"""`bakery generate`: render every configured seed to build/raw/example-{ID}.png, resumably.

build/raw/manifest.json records, per ID, the checkpoint's sha256 and the seed, psi, noise
mode and truncation cutoff it was rendered with, plus the PNG's size and sha256. A rerun
skips IDs whose PNG and record match the config; an ID whose model, psi, noise mode or
cutoff changed, or whose PNG is missing, truncated or altered (size or sha256 differ), is
rendered again. PNGs are written atomically, so a kill -9 leaves whole files or none; each
one is recorded in build/raw/journal.jsonl as soon as it is written (bakery/journal.py),
and the journal is compacted into the manifest at the start and end of a run.
"""

from __future__ import annotations

import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bakery.errors import BakeryError
from bakery.fsutil import remove_stale_temps, write_bytes_atomic, write_json_atomic
from bakery.images.config import EMBEDDED_MODEL, MAX_BATCH
from bakery.journal import JOURNAL_NAME, Journal, replay
from bakery.progress import progress, spinner
from bakery.verify import record_of, verifies

log = logging.getLogger("bakery.images")

EMBEDDED_PATH = Path(__file__).resolve().parent / "data" / "demo_stylegan2_256.pkl"
MANIFEST_VERSION = 1
JOURNAL_HEADER = {"stage": "generate", "version": MANIFEST_VERSION}  # records carry their own settings


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
    record = {"seed": seed, "psi": band.psi, "noise": band.noise, "truncation_cutoff": cutoff,
              "model_sha256": sha256}
    if getattr(band, "class_index", None) is not None:  # only conditional models have one
        record["class"] = band.class_index
    if getattr(band, "transformed", False):  # StyleGAN3's input transform; absent = identity
        record["translate"] = list(band.translate or (0.0, 0.0))
        record["rotate"] = band.rotate or 0.0
    return record



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
    return verifies(image_path(raw_dir, image_id), record)


def compact_journal(manifest_path: Path, journal_path: Path, records: dict) -> None:
    """Nothing to render, but a killed run's journal holds records: fold them into the
    manifest (its other fields were written by that run before its journal was opened)."""
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict):  # else keep the journal: it is replayed on every run until then
        write_json_atomic(manifest_path, {**data, "images": records})
        journal_path.unlink(missing_ok=True)


def encode_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_batch(raw_dir: Path, ids: list[int], pixels: np.ndarray, on_written=None) -> list[int]:
    """Encode and write each PNG, reporting it (ID, size + sha256) the moment it is in place."""
    return write_pngs(raw_dir, encode_batch(ids, pixels), on_written)


def encode_batch(ids: list[int], pixels: np.ndarray):
    """(ID, PNG bytes) per image, lazily: a local writer interleaves encoding and writing."""
    return ((image_id, encode_png(image)) for image_id, image in zip(ids, pixels))


def write_pngs(raw_dir: Path, pngs, on_written=None) -> list[int]:
    """Write encoded PNGs atomically (from this process or from a Ray worker's batch)."""
    sizes = []
    for image_id, data in pngs:
        write_bytes_atomic(image_path(raw_dir, image_id), data)
        if on_written is not None:
            on_written(image_id, record_of(data))
        sizes.append(len(data))
    return sizes


def batch_size_of(cfg, args) -> int:
    override = getattr(args, "batch_size", None)
    if override is not None and not 1 <= override <= MAX_BATCH:
        raise BakeryError(f"--batch-size must be between 1 and {MAX_BATCH}, got {override}")
    return override or cfg.batch_size


@dataclass
class GeneratePlan:
    """What `generate` has to do: the wanted records, the IDs to render and their batches."""

    raw_dir: Path
    manifest_path: Path
    journal_path: Path
    model_path: Path
    sha256: str
    batch: int
    records: dict
    wanted: dict[int, dict]
    todo: list[int]
    batches: list[list[int]]


def plan_generate(config, args) -> GeneratePlan:
    """Read the manifest (+ a killed run's journal) and list what is missing or broken, in the
    batches a run renders (for --shard: only this shard's batches, bakery/scale/shard.py)."""
    from bakery.images.pickle_loader import sha256_of
    from bakery.scale.shard import plan_batches

    cfg = config.images
    raw_dir = config.build_dir / "raw"
    model_path = resolve_model(cfg)
    batch = batch_size_of(cfg, args)
    sha256 = sha256_of(model_path)
    remove_stale_temps(raw_dir)
    journal_path = raw_dir / JOURNAL_NAME
    manifest_path = raw_dir / "manifest.json"
    records = {**load_manifest(manifest_path), **replay(journal_path, JOURNAL_HEADER)}
    wanted = {i: wanted_record(band, i, sha256, cfg.truncation_cutoff) for band in cfg.bands for i in band.ids}
    todo = [i for i, w in wanted.items() if not is_done(raw_dir, i, records.get(str(i)), w)]
    batches = plan_batches(list(wanted), todo, batch, getattr(args, "shard", None))
    todo = [i for ids in batches for i in ids]
    return GeneratePlan(raw_dir, manifest_path, journal_path, model_path, sha256, batch, records, wanted,
                        todo, batches)


class GenerateWorker:
    """The loaded generator of one process (this one, or a Ray actor's): IDs → pixels or PNGs."""

    def __init__(self, model_path: Path, sha256: str, bands, truncation_cutoff, quiet: bool = True):
        from bakery.images.checkpoints import check_band_classes, check_band_transforms, load_generator
        from bakery.images.generator import Renderer

        with spinner(f"loading {model_path.name}", quiet=quiet):
            self.model = load_generator(model_path)
        if self.model.sha256 != sha256:
            raise BakeryError(f"images.model: {model_path} changed while the stage was starting; run it again")
        check_band_classes(self.model.generator, bands)
        check_band_transforms(self.model.generator, bands)
        self.renderer = Renderer(self.model.generator, truncation_cutoff)

    def render(self, ids: list[int], wanted: dict[int, dict]) -> np.ndarray:
        from bakery.images.generator import record_transform

        out = self.renderer.render_seeds(ids, [wanted[i]["psi"] for i in ids], [wanted[i]["noise"] for i in ids],
                                         classes=[wanted[i].get("class") for i in ids],
                                         transforms=[record_transform(wanted[i]) for i in ids])
        return out["uint8"]

    def render_pngs(self, ids: list[int], wanted: dict[int, dict]) -> list[tuple[int, bytes]]:
        """For a remote worker: the encoded PNGs travel back, not the raw pixels."""
        return list(encode_batch(ids, self.render(ids, wanted)))


def run_generate(config, args) -> None:
    cfg = config.images
    plan = plan_generate(config, args)
    raw_dir, manifest_path, journal_path = plan.raw_dir, plan.manifest_path, plan.journal_path
    model_path, sha256, batch, records, wanted, todo = (plan.model_path, plan.sha256, plan.batch, plan.records,
                                                        plan.wanted, plan.todo)
    log.info("images: %d of %d to render (%d already done), model %s (sha256 %s…), batch %d",
             len(todo), len(wanted), len(wanted) - len(todo), model_path.name, sha256[:12], batch)
    if not todo:
        if journal_path.exists():
            compact_journal(manifest_path, journal_path, records)
        return
    from bakery.scale.executor import remote_executor

    remote = remote_executor(config, args, "generate")
    if remote is not None:
        from bakery.scale.stages import generate_remote

        return generate_remote(remote, config, args, plan)

    worker = GenerateWorker(model_path, sha256, cfg.bands, cfg.truncation_cutoff, quiet=args.quiet)
    model, renderer = worker.model, worker.renderer
    log.info("images: %s, %d px, %d W rows (truncating the first %d), on %s", model.description,
             model.generator.resolution, model.generator.num_ws, renderer.cutoff, renderer.device)
    save_manifest, written, journal = open_records(plan, cfg, model.generator)

    bar = progress(None, desc="images", total=len(todo), unit="img", quiet=args.quiet)
    # One writer thread encodes and writes PNGs while TensorFlow renders the next batch.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = None
        try:
            for number, ids in enumerate(plan.batches):
                with spinner("tracing the generator graph", quiet=args.quiet or number > 0, delay=1.0):
                    pixels = worker.render(ids, wanted)
                if pending is not None:
                    bar.update(len(pending.result()))
                pending = writer.submit(write_batch, raw_dir, ids, pixels, written)
            if pending is not None:
                bar.update(len(pending.result()))
        finally:
            bar.close()
            writer.shutdown(wait=True)  # every written PNG is in `records` before the save
            save_manifest()
            journal.remove()
    log.info("images: rendered %d image(s) into %s", len(todo), raw_dir)


def open_records(plan: GeneratePlan, cfg, generator: dict | object):
    """Write the manifest (compacting a killed run's journal) and open a fresh journal;
    returns (save_manifest, written(image_id, record), journal). `generator` is the loaded
    generator, or its {"kind", "resolution"} as a remote worker reported them."""
    kind = generator["kind"] if isinstance(generator, dict) else generator.kind
    resolution = generator["resolution"] if isinstance(generator, dict) else generator.resolution
    records = plan.records

    def save_manifest():
        write_json_atomic(plan.manifest_path, {
            "version": MANIFEST_VERSION, "model": str(cfg.model), "model_path": str(plan.model_path),
            "model_sha256": plan.sha256, "generator": kind, "resolution": resolution, "images": records})

    save_manifest()  # compacts a killed run's journal before the new one replaces it
    journal = Journal(plan.journal_path, JOURNAL_HEADER, "generate")

    def written(image_id: int, record: dict) -> None:
        records[str(image_id)] = {**plan.wanted[image_id], **record}
        journal.add(image_id, records[str(image_id)])

    return save_manifest, written, journal
