"""`bakery video grid|coarse|fine|circular`: render a video of a checkpoint to H.264 MP4.

    bakery video grid --seconds 60 --grid 2x2 --out walk.mp4
    bakery video coarse --model anime.pkl --targets 10,11,12 --out coarse.mp4
    bakery video circular --seed 7 --psi 0.6 --out circle.mp4
    bakery video grid --model conditional.pkl --class 3 --out class3.mp4

`--model X.pkl` needs no project; without it the project's [images] model (and its
truncation_cutoff) is used. Same seed and options → the same frames. A crash resumes
from the chunks already encoded (see bakery/video/encode.py).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from pathlib import Path

from bakery.errors import BakeryError
from bakery.fsutil import write_json_atomic
from bakery.verify import record_file, verifies

log = logging.getLogger("bakery.video")

KINDS = ("grid", "coarse", "fine", "circular")
DEFAULT_FPS = 30
MAX_FPS = 120
MAX_FRAMES = 24 * 60 * 60 * 30  # a day at 30 fps: a bound that catches unit mistakes
MAX_SECONDS = 24 * 60 * 60      # a day
MAX_GRID = 8
VERSION = 1  # bump when the frames a given set of options means change


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=KINDS, help="grid: random walks in a grid; coarse/fine: style mixing "
                   "of target seeds with a walking source; circular: a loop around a seed's latent")
    p.add_argument("--model", type=Path, default=None,
                   help="checkpoint .pkl (no project needed; default: the project's images.model)")
    p.add_argument("--out", type=Path, default=None,
                   help="output .mp4 (default: build/videos/KIND-SEED.mp4, or ./KIND-SEED.mp4 with --model)")
    p.add_argument("--seed", type=int, default=0, help="seed of the walk or circle (default: 0)")
    p.add_argument("--psi", type=float, default=0.7, help="truncation psi (default: 0.7)")
    p.add_argument("--seconds", type=float, default=60.0, help="length (default: 60)")
    p.add_argument("--fps", type=int, default=DEFAULT_FPS, help=f"frames per second (default: {DEFAULT_FPS})")
    p.add_argument("--size", type=int, default=None, help="cell size in px, downscaled (default: the model's)")
    p.add_argument("--noise", choices=("const", "seeded"), default="const",
                   help="noise inputs: the checkpoint's stored maps, or drawn per seed (default: const)")
    p.add_argument("--grid", default=None, help="grid: columns x rows (default: 2x2)")
    p.add_argument("--smoothing", type=float, default=None,
                   help="grid/coarse/fine: Gaussian smoothing of the walk in seconds (default: 1.0)")
    p.add_argument("--rows", default=None, help="coarse/fine: W rows A-B to mix in (default: coarse 0-3, "
                   "fine 8 to the last)")
    p.add_argument("--targets", default=None, help="coarse/fine: target seeds, e.g. 10,11,12 or 10-13 "
                   "(default: the 4 seeds after --seed)")
    p.add_argument("--radius", type=float, default=None,
                   help="circular: radius in units of sqrt(z_dim) (default: 0.5)")
    p.add_argument("--class", dest="class_index", type=int, default=None, metavar="N",
                   help="class of every face, for a class-conditional model (default: the first band's "
                        "`class`; with --model required by such a model)")
    p.add_argument("--crf", type=int, default=20, help="x264 quality, 0 (lossless) to 51 (default: 20)")
    p.add_argument("--batch-size", type=int, default=None, help="images per generator call (default: 8)")


def only_for(args, option: str, kinds: tuple[str, ...]) -> None:
    if getattr(args, option) is not None and args.kind not in kinds:
        raise BakeryError(f"--{option.replace('_', '-')} applies to `video {'|'.join(kinds)}` only, "
                          f"not to `video {args.kind}`")


def in_range(value, name: str, low, high) -> None:
    if not low <= value <= high:
        raise BakeryError(f"{name} must be between {low} and {high}, got {value}")


def parse_grid(text: str) -> tuple[int, int]:
    cols, sep, rows = text.lower().partition("x")
    try:
        c, r = int(cols), int(rows)
    except ValueError:
        raise BakeryError(f"--grid: expected COLSxROWS like 2x2, got {text!r}") from None
    if not (1 <= c <= MAX_GRID and 1 <= r <= MAX_GRID):
        raise BakeryError(f"--grid: columns and rows must be 1 to {MAX_GRID}, got {text!r}")
    return c, r


def parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        try:
            a, b = int(first), int(last) if sep else int(first)
        except ValueError:
            raise BakeryError(f"--targets: expected seeds like 10,11 or 10-13, got {text!r}") from None
        if a < 0 or b < a or b - a >= MAX_GRID * 2:
            raise BakeryError(f"--targets: {part.strip()!r} is not a range A-B with 0 ≤ A ≤ B (at most "
                              f"{MAX_GRID * 2} seeds)")
        seeds += range(a, b + 1)
    if not 1 <= len(seeds) <= MAX_GRID * 2:
        raise BakeryError(f"--targets: 1 to {MAX_GRID * 2} seeds, got {len(seeds)}")
    return seeds


def check_common(args) -> int:
    """Validate what does not need the model; returns the frame count."""
    only_for(args, "grid", ("grid",))
    only_for(args, "smoothing", ("grid", "coarse", "fine"))
    only_for(args, "rows", ("coarse", "fine"))
    only_for(args, "targets", ("coarse", "fine"))
    only_for(args, "radius", ("circular",))
    if not 0 <= args.seed < 2 ** 32:
        raise BakeryError(f"--seed must be between 0 and 2**32-1, got {args.seed}")
    in_range(args.psi, "--psi", -2.0, 2.0)
    in_range(args.fps, "--fps", 1, MAX_FPS)
    in_range(args.crf, "--crf", 0, 51)
    if args.batch_size is not None:
        from bakery.images.config import MAX_BATCH

        in_range(args.batch_size, "--batch-size", 1, MAX_BATCH)
    if args.smoothing is not None:
        in_range(args.smoothing, "--smoothing", 0.0, 600.0)
    if args.radius is not None:
        in_range(args.radius, "--radius", 0.001, 10.0)
    if not math.isfinite(args.seconds):  # inf and 1e400 (which float() reads as inf), nan
        raise BakeryError(f"--seconds must be a finite number of seconds, got {args.seconds}")
    if not args.seconds > 0:
        raise BakeryError(f"--seconds must be positive, got {args.seconds}")
    if args.seconds > MAX_SECONDS:
        raise BakeryError(f"--seconds {args.seconds:g} is more than a day: at most {MAX_SECONDS}")
    if args.grid is not None:
        parse_grid(args.grid)  # before the model loads
    frames = round(args.seconds * args.fps)
    minimum = 3 if args.kind == "circular" else 2
    if not minimum <= frames <= MAX_FRAMES:
        raise BakeryError(f"--seconds {args.seconds:g} at --fps {args.fps} gives {frames} frames; "
                          f"need {minimum} to {MAX_FRAMES}")
    if args.out is not None and args.out.suffix.lower() != ".mp4":
        raise BakeryError(f"--out {args.out}: must end in .mp4 (an H.264 MP4 is written)")
    return frames


def cell_size(args, resolution: int) -> int:
    size = resolution if args.size is None else args.size
    if not 16 <= size <= resolution or size % 2:
        raise BakeryError(f"--size must be an even number of px from 16 to the model's {resolution}, got {size}")
    return size


def model_and_cutoff(config, args) -> tuple[Path, int | None]:
    if args.model is not None:
        if not args.model.is_file():
            raise BakeryError(f"--model {args.model}: file not found")
        return args.model, None
    from bakery.images.stage import resolve_model

    return resolve_model(config.images), config.images.truncation_cutoff


def output_path(config, args) -> Path:
    if args.out is not None:
        out = args.out
    else:
        folder = config.build_dir / "videos" if config is not None else Path(".")
        out = folder / f"{args.kind}-{args.seed}.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(out.parent, os.W_OK):
        raise BakeryError(f"--out {out}: folder {out.parent} is not writable")
    return out


def build_kind(renderer, args, frames: int):
    from bakery.video.frames import CircularWalk, GridWalk, Look, StyleMix
    from bakery.video.latents import named_rows, parse_rows

    gen = renderer.gen
    look = Look(seed=args.seed, psi=args.psi, noise=args.noise, size=cell_size(args, gen.resolution),
                batch=args.batch_size or 8, frames=frames, fps=args.fps, class_index=args.class_index)
    smoothing = 1.0 if args.smoothing is None else args.smoothing
    if args.kind == "grid":
        return GridWalk(renderer, look, *parse_grid(args.grid or "2x2"), smoothing)
    if args.kind in ("coarse", "fine"):
        rows = parse_rows(args.rows, gen.num_ws) if args.rows else named_rows(args.kind, gen.num_ws)
        targets = parse_seeds(args.targets) if args.targets else list(range(args.seed + 1, args.seed + 5))
        return StyleMix(renderer, look, targets, rows, smoothing)
    return CircularWalk(renderer, look, 0.5 if args.radius is None else args.radius)


def job_key(args, sha256: str, cutoff) -> dict:
    """Everything that decides the frames: a change restarts the chunks from scratch."""
    keys = ("kind", "seed", "psi", "seconds", "fps", "size", "noise", "grid", "smoothing", "rows",
            "targets", "radius", "crf")
    key = {"version": VERSION, "model_sha256": sha256, "truncation_cutoff": cutoff,
           **{k: getattr(args, k) for k in keys}}
    if args.class_index is not None:  # only then: unconditional videos keep their encoded chunks
        key["class"] = args.class_index
    return key


def finished_record_path(out: Path) -> Path:
    """Beside the output, hidden like its chunk folder: what the finished video was made from."""
    return out.parent / f".{out.name}.json"


def finished_key(args, model_path: Path, cutoff, frames: int) -> dict:
    from bakery.fsutil import sha256_file

    return {**job_key(args, sha256_file(model_path), cutoff), "frames": frames}


def is_finished(out: Path, record_path: Path, key_of) -> bool:
    """Verify, don't trust: the output is the file the last run wrote (size and sha256), it was
    made with the same model and options, and ffmpeg reads it as that video (codec, size, fps,
    length)."""
    import json

    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict):
        return False
    key = key_of()  # hashes the model: only when there is a record to compare with
    if record.get("key") != key or not verifies(out, record):
        return False
    return probes_as(out, record.get("size"), key["fps"], key["frames"])


def probes_as(out: Path, size, fps: int, frames: int) -> bool:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(out))
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration):
        return False
    finally:
        reader.close()
    return (meta.get("codec") == "h264" and list(meta.get("size") or ()) == size
            and meta.get("fps") == fps and abs(meta.get("duration", 0) - frames / fps) <= 1.0 / fps)


def run_video(config, args) -> None:
    frames = check_common(args)
    model_path, cutoff = model_and_cutoff(config, args)
    if args.class_index is None and args.model is None:
        args.class_index = config.images.bands[0].class_index  # as `bakery figures` does
    out = output_path(config, args)
    record_path = finished_record_path(out)
    if is_finished(out, record_path, lambda: finished_key(args, model_path, cutoff, frames)):
        log.info("video: %s is already rendered with this model and these options (verified); "
                 "delete it to render it again", out)
        return

    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer
    from bakery.progress import progress
    from bakery.video.encode import ChunkedVideo, EncodeOptions

    from bakery.images.quick import check_class

    model = load_generator(model_path)
    check_class(model.generator, args.class_index, model_path)
    renderer = Renderer(model.generator, cutoff)
    log.info("video %s: %s, %d px, %d frames at %d fps → %s", args.kind, model.generator.kind,
             model.generator.resolution, frames, args.fps, out)
    kind = build_kind(renderer, args, frames)
    video = ChunkedVideo(out, frames, EncodeOptions(kind.width, kind.height, args.fps, args.crf),
                         job_key(args, model.sha256, cutoff))
    todo = video.missing()
    done = frames - sum(stop - start for _, start, stop in todo)
    if done:
        log.info("video: resuming, %d of %d frames already encoded", done, frames)
    bar = progress(None, desc=f"video {args.kind}", total=frames, unit="frame", quiet=args.quiet, initial=done)
    try:
        for index, start, stop in todo:
            video.write_chunk(index, kind.render(start, stop), stop - start, on_frame=lambda: bar.update(1))
    finally:
        bar.close()
    video.finish()
    write_json_atomic(record_path, {"key": {**job_key(args, model.sha256, cutoff), "frames": frames},
                                    "size": [kind.width, kind.height], **record_file(out)})
    log.info("video: wrote %s (%dx%d, %d frames, %.1f s, %.2f MB)", out, kind.width, kind.height, frames,
             frames / args.fps, out.stat().st_size / 1e6)
