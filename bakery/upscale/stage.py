"""`bakery upscale` (build/raw → build/upscaled) and `bakery compress` (build/upscaled → public JPEGs).

Both stages are resumable. An output counts as done when it exists, is at least as new as its
source, still has the size and sha256 recorded when it was written (a truncated, altered or
replaced output is redone), and the stage's manifest says it was made with the current
settings; a settings change (say upscale.noise or jpeg.quality) therefore redoes every image.
Outputs are written atomically, so a killed run leaves complete files or none, and each is
recorded in the stage's journal.jsonl the moment it is written (bakery/journal.py). A PNG that cannot be decoded is
reported by ID and skipped; the others finish, then the stage raises StageFailures.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bakery.cpus import usable_cpus
from bakery.errors import BakeryError, StageFailures
from bakery.fsutil import atomic_open, remove_stale_temps, write_bytes_atomic, write_json_atomic
from bakery.journal import JOURNAL_NAME, Journal, replay
from bakery.progress import progress, spinner
from bakery.scale.shard import image_ids
from bakery.verify import record_file, verifies

log = logging.getLogger("bakery.upscale")
PNG_LEVEL = 1  # build/upscaled is scratch space: fast zlib beats small files there
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)


# --- bookkeeping shared by both stages ------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: int
    src: Path
    dst: Path
    source: list[int] | None = None  # the source's [mtime_ns, size] when the job was planned


class Manifest:
    """build/<stage>/manifest.json: the settings the outputs were made with and which IDs are done,
    plus the journal beside it that records each output as it is written."""

    def __init__(self, path: Path, settings: dict, stage: str):
        self.path, self.settings = path, settings
        # ID → {"bytes": output size, "sha256": output hash, "source": [mtime_ns, size]}
        self.done: dict[str, dict] = {}
        try:
            import json

            old = json.loads(path.read_text(encoding="utf-8"))
            if old.get("settings") == settings and isinstance(old.get("done"), dict):
                self.done = {str(k): v for k, v in old["done"].items() if isinstance(v, dict)}
            elif old.get("settings") != settings:
                log.info("%s: settings changed (%s → %s): every image is redone",
                         path, old.get("settings"), settings)
        except (OSError, ValueError, TypeError, AttributeError):
            pass  # no (readable) manifest: nothing counts as done
        header = {"settings": settings}
        journal_path = path.parent / JOURNAL_NAME
        self.done.update(replay(journal_path, header))  # what a killed run finished
        self.write()  # record the current settings (and compact the journal) before any new output
        self.journal = Journal(journal_path, header, stage)

    def record(self, job: Job, size: int) -> None:
        """Called the moment job.dst is in place (from any thread)."""
        entry = {**record_file(job.dst), "source": job.source}
        self.done[str(job.id)] = entry
        self.journal.add(job.id, entry)

    def close(self) -> None:
        """The end of a run: every record into the manifest, then the journal goes."""
        self.write()
        self.journal.remove()

    def forget(self, image_id: int) -> None:
        self.done.pop(str(image_id), None)

    def write(self) -> None:
        write_json_atomic(self.path, {"settings": self.settings, "done": dict(self.done)})


def source_signature(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_mtime_ns, st.st_size]


def plan(ids: list[int], src_of, dst_of, manifest: Manifest) -> tuple[list[Job], list[Job], dict[int, str]]:
    """Split IDs into (to do, already done, missing source → message).

    Done means: the output exists, is at least as new as its source, and the manifest saw it
    made from this very source (same mtime and size) with the current settings. The last
    check catches sources replaced by older files and hard-linked outputs (method none),
    whose mtime is the source's own.
    """
    todo, done, missing = [], [], {}
    for image_id in ids:
        source = source_signature(src_of(image_id))
        job = Job(image_id, src_of(image_id), dst_of(image_id), source)
        entry = manifest.done.get(str(image_id))
        try:
            dst_time = job.dst.stat().st_mtime_ns
        except FileNotFoundError:
            dst_time = None
        fresh = source is None or (dst_time is not None and dst_time >= source[0]
                                   and entry is not None and entry.get("source") == source)
        if entry is not None and dst_time is not None and fresh and verifies(job.dst, entry):
            done.append(job)
        elif source is None:
            manifest.forget(image_id)
            missing[image_id] = f"{job.src} is missing"
        else:
            manifest.forget(image_id)
            todo.append(job)
    return todo, done, missing


def size_report(stage: str, outputs: list[Path], what: str) -> None:
    sizes = [path.stat().st_size for path in outputs if path.exists()]
    if sizes:
        total = sum(sizes)
        log.info("%s: %d %s, %s bytes in total, mean %s bytes (%.1f KiB) per image",
                 stage, len(sizes), what, f"{total:,}", f"{total // len(sizes):,}", total / len(sizes) / 1024)


# stage → (what its inputs are called, the command that makes them)
INPUTS = {"upscale": ("raw", "generate"), "compress": ("upscaled", "upscale")}
LISTED_FAILURES = 5  # failures named one by one in the final line; the rest are counted


def missing_summary(stage: str, missing: dict[int, str]) -> str:
    """One line for any number of missing inputs: "36 upscaled images missing (IDs 0-35): ..."."""
    from bakery.seeds import format_seeds

    what, before = INPUTS[stage]
    ids = sorted(missing)
    return (f"{len(ids)} {what} image{'' if len(ids) == 1 else 's'} missing (ID{'' if len(ids) == 1 else 's'} "
            f"{format_seeds(ids)}): run `bakery {before}` first")


def check_missing(stage: str, missing: dict[int, str], total: int) -> None:
    """Nothing to work on → stop with one line; some inputs missing → one warning line."""
    if missing and len(missing) == total:
        raise BakeryError(f"{stage}: {missing_summary(stage, missing)}")
    if missing:
        log.warning("%s: %s", stage, missing_summary(stage, missing))


def finish(stage: str, failures: dict[int, str], total: int, missing: dict[int, str] | None = None) -> None:
    missing = missing or {}
    if failures or missing:
        items = sorted(failures.items())
        parts = [f"ID {i}: {msg}" for i, msg in items[:LISTED_FAILURES]]
        if len(items) > LISTED_FAILURES:
            parts.append(f"and {len(items) - LISTED_FAILURES} more")
        if missing:
            parts.append(missing_summary(stage, missing))
        raise StageFailures(f"{stage}: {len(failures) + len(missing)} of {total} images failed: {'; '.join(parts)}")


def open_png(path: Path) -> Image.Image:
    """Decode fully now, so a truncated or corrupt file fails here with a clear message."""
    return decode_png(read_source(path), path)


def read_source(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise BakeryError(f"{path} is missing") from None


def decode_png(data: bytes, name, what: str = "PNG") -> Image.Image:
    """Image bytes (read here, or sent to a Ray worker) → a fully decoded image, so a truncated
    or corrupt file fails here with one line; `name` is the source path the error names."""
    import io

    if data is None:
        raise BakeryError(f"{name} is missing")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img
    except DECODE_ERRORS as exc:
        raise BakeryError(f"{name}: cannot decode {what} ({exc or type(exc).__name__})") from None


# --- upscale --------------------------------------------------------------------------------


def encode_png(img: Image.Image, icc: bytes | None) -> bytes:
    import io

    extra = {"icc_profile": icc} if icc else {}
    buffer = io.BytesIO()
    img.save(buffer, "PNG", compress_level=PNG_LEVEL, **extra)
    return buffer.getvalue()


def save_png(img: Image.Image, path: Path, icc: bytes | None) -> int:
    data = encode_png(img, icc)
    write_bytes_atomic(path, data)
    return len(data)


def link_or_copy(src: Path, dst: Path) -> int:
    """method = none: the raw PNG is the upscaled PNG. A hard link costs nothing; else copy."""
    tmp = dst.with_name(f".tmp-{dst.name}.link")
    try:
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        tmp.unlink(missing_ok=True)
        with atomic_open(dst) as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
    return dst.stat().st_size


class Upscaler:
    """One process's upscaler: opens, enlarges and saves images for a given [upscale] config."""

    def __init__(self, cfg, threads: int):
        self.method = cfg.method
        self.model = None
        if cfg.method == "waifu2x":
            from bakery.upscale.engines import make_from_config

            self.model = make_from_config(cfg, threads)

    def run(self, jobs: list[Job], on_saved=None) -> list[tuple[int, int | None, str | None]]:
        """Upscale a batch of files; returns (id, output bytes or None, error or None) for each job.
        on_saved(job, size) is called as each output lands (in-process runs record it there)."""
        on_saved = on_saved or (lambda job, size: None)
        results, sources = [], []
        for job in jobs:
            if self.method == "none":
                try:
                    open_png(job.src)  # a broken source is reported, not linked
                except BakeryError as exc:
                    results.append((job.id, None, str(exc)))
                    continue
                results.append((job.id, link_or_copy(job.src, job.dst), None))
                on_saved(job, results[-1][1])
                continue
            try:
                sources.append((job.id, str(job.src), read_source(job.src)))
            except BakeryError as exc:
                results.append((job.id, None, str(exc)))
        by_id = {job.id: job for job in jobs}
        for image_id, data, error in self.compute(sources):
            if error is None:
                write_bytes_atomic(by_id[image_id].dst, data)
                results.append((image_id, len(data), None))
                on_saved(by_id[image_id], len(data))
            else:
                results.append((image_id, None, error))
        return results

    def compute(self, sources: list[tuple[int, str, bytes]]) -> list[tuple[int, bytes | None, str | None]]:
        """(ID, source name, PNG bytes) → (ID, upscaled PNG bytes or None, error or None): the
        part a Ray worker runs, with no file access (bakery/scale/stages.py)."""
        results, loaded = [], []
        for image_id, name, data in sources:
            try:
                loaded.append((image_id, decode_png(data, name)))
            except BakeryError as exc:
                results.append((image_id, None, str(exc)))
        if not loaded:
            return results
        if self.method == "waifu2x":
            bigger = self.model.upscale_images([img for _, img in loaded])
        else:
            from bakery.upscale.modes import lanczos_2x

            bigger = [lanczos_2x(img) for _, img in loaded]
        for (image_id, img), out in zip(loaded, bigger):
            results.append((image_id, encode_png(out, img.info.get("icc_profile")), None))
        # in the batch's order: the Ray driver accepts only the IDs it sent, in that order
        order = {image_id: n for n, (image_id, _, _) in enumerate(sources)}
        return sorted(results, key=lambda result: order[result[0]])


_worker: Upscaler | None = None


def _init_worker(*settings) -> None:
    global _worker
    _worker = Upscaler(*settings)


def _run_in_worker(jobs: list[Job]):
    return _worker.run(jobs)


def upscale_plan(cfg, has_gpu: bool, jobs: int) -> tuple[int, int, int]:
    """(worker processes, threads each, images per call) for this config and machine.

    By default one process runs the engine with a thread per core: measured on 2 cores it beat
    two single-threaded worker processes (which also pay the engine's start-up twice), see
    docs/upscale.md. On a GPU one process feeds it batches of images.
    """
    cores = usable_cpus()
    if cfg.method != "waifu2x":
        return 1, 1, 1
    if has_gpu:
        return 1, cfg.threads or cores, cfg.batch_size
    workers = max(1, min(cfg.workers or 1, jobs))
    threads = cfg.threads or max(1, cores // workers)
    return workers, threads, 1


def run_upscale(config, args) -> None:
    cfg = config.upscale
    raw_dir, out_dir = config.build_dir / "raw", config.build_dir / "upscaled"
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    manifest = Manifest(out_dir / "manifest.json", cfg.settings(), "upscale")
    ids = image_ids(config, args)
    todo, done, missing = plan(ids, lambda i: raw_dir / f"example-{i}.png",
                               lambda i: out_dir / f"example-{i}.png", manifest)
    check_missing("upscale", missing, len(ids))
    failures: dict[int, str] = {}
    log.info("upscale: %d images to do with %s, %d already done", len(todo), _describe(cfg), len(done))
    try:
        if todo:
            from bakery.scale.executor import remote_executor

            remote = remote_executor(config, args, "upscale", local_only=cfg.method == "none")
            if remote is not None:
                from bakery.scale.stages import upscale_remote

                upscale_remote(remote, cfg, todo, manifest, failures, quiet=args.quiet)
            else:
                _upscale_jobs(cfg, todo, manifest, failures, quiet=args.quiet)
    finally:
        manifest.close()
    size_report("upscale", [out_dir / f"example-{i}.png" for i in ids], "upscaled PNGs")
    finish("upscale", failures, len(ids), missing)


def _describe(cfg) -> str:
    if cfg.method == "waifu2x":
        return f"waifu2x upconv_7 (noise {cfg.noise}, {cfg.engine})"
    return {"lanczos": "Lanczos 2x", "none": "no upscaling (links)"}[cfg.method]


def _upscale_jobs(cfg, todo: list[Job], manifest: Manifest, failures: dict, quiet: bool) -> None:
    has_gpu = False
    if cfg.method == "waifu2x":
        from bakery.upscale.engines import gpu_available

        has_gpu = gpu_available(cfg.engine, cfg.gpu)
    workers, threads, per_call = upscale_plan(cfg, has_gpu, len(todo))
    settings = (cfg, threads)
    chunks = [todo[i:i + per_call] for i in range(0, len(todo), per_call)]
    if cfg.method == "waifu2x":
        log.info("upscale: %s on %s, %d worker process(es) x %d thread(s)", cfg.engine,
                 "GPU" if has_gpu else "CPU", workers, threads)
    bar = progress(None, desc="upscale", total=len(todo), unit="img", quiet=quiet)
    by_id = {job.id: job for job in todo}

    def collect(results, recorded: bool = True) -> None:
        for image_id, size, error in results:
            if error:
                failures[image_id] = error
                log.error("upscale: ID %d: %s", image_id, error)
            elif not recorded:  # from a worker process: recorded here, as its chunk returns
                manifest.record(by_id[image_id], size)
            bar.update(1)

    def run_here(chunk):
        return upscaler.run(chunk, on_saved=manifest.record)

    try:
        if workers == 1:
            with spinner("loading waifu2x", quiet=quiet):  # TensorFlow's import alone takes seconds
                upscaler = Upscaler(*settings)
            if cfg.method == "waifu2x":
                for chunk in chunks:
                    collect(run_here(chunk))
            else:  # Pillow releases the GIL while it decodes, resizes and encodes
                with cf.ThreadPoolExecutor(usable_cpus()) as pool:
                    for results in pool.map(run_here, chunks):
                        collect(results)
        else:
            # spawn, not fork: TensorFlow's and OpenMP's (ncnn's) thread pools do not survive a fork
            context = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                        initargs=settings) as pool:
                futures = [pool.submit(_run_in_worker, chunk) for chunk in chunks]
                try:
                    for future in cf.as_completed(futures):
                        collect(future.result(), recorded=False)
                except cf.process.BrokenProcessPool:
                    raise BakeryError("upscale: a worker process died (out of memory?); "
                                      "rerun to continue, or lower upscale.workers / tile_size") from None
    finally:
        bar.close()


# --- compress -------------------------------------------------------------------------------


def compress_bytes(image_id: int, name: str, data: bytes, jpeg_cfg) -> tuple[int, bytes | None, str | None]:
    """(ID, source name, PNG bytes) → (ID, JPEG bytes or None, error or None): the part a Ray
    worker runs, with no file access (bakery/scale/stages.py)."""
    from bakery.upscale.jpeg import encode_jpeg

    try:
        img = decode_png(data, name)
    except BakeryError as exc:
        return image_id, None, str(exc)
    return image_id, encode_jpeg(img, jpeg_cfg, Path(name).with_suffix(".jpg").name), None


def compress_one(job: Job, jpeg_cfg, manifest: Manifest) -> tuple[int, int | None, str | None]:
    try:
        data = read_source(job.src)
    except BakeryError as exc:
        return job.id, None, str(exc)
    _, jpeg, error = compress_bytes(job.id, str(job.src), data, jpeg_cfg)
    if error:
        return job.id, None, error
    write_bytes_atomic(job.dst, jpeg)
    manifest.record(job, len(jpeg))  # in this worker thread, the moment the JPEG is in place
    return job.id, len(jpeg), None


def run_compress(config, args) -> None:
    cfg = config.jpeg
    src_dir, out_dir = config.build_dir / "upscaled", config.public_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    manifest = Manifest(config.build_dir / "compress" / "manifest.json", cfg.settings(), "compress")
    ids = image_ids(config, args)
    todo, done, missing = plan(ids, lambda i: src_dir / f"example-{i}.png",
                               lambda i: out_dir / f"example-{i}.jpg", manifest)
    check_missing("compress", missing, len(ids))
    failures: dict[int, str] = {}
    log.info("compress: %d images to encode (JPEG quality %d), %d already done", len(todo), cfg.quality, len(done))
    from bakery.scale.executor import remote_executor

    remote = remote_executor(config, args, "compress") if todo else None
    bar = progress(None, desc="compress", total=len(todo), unit="img", quiet=args.quiet)
    try:
        if remote is not None:
            from bakery.scale.stages import compress_remote

            compress_remote(remote, cfg, todo, manifest, failures, bar)
            todo = []
        # libjpeg-turbo and zlib run with the GIL released, so threads use every core
        with cf.ThreadPoolExecutor(cfg.workers or usable_cpus()) as pool:
            for image_id, size, error in pool.map(lambda job: compress_one(job, cfg, manifest), todo):
                if error:
                    failures[image_id] = error
                    log.error("compress: ID %d: %s", image_id, error)
                bar.update(1)
    finally:
        bar.close()
        manifest.close()
    size_report("compress", [out_dir / f"example-{i}.jpg" for i in ids], "JPEGs")
    finish("compress", failures, len(ids), missing)
