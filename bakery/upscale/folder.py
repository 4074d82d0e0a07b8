"""`bakery upscale --in DIR --out DIR [-n NOISE] [-s SCALE] [--engine E]`: waifu2x on any folder of images.

waifu2x-ncnn-vulkan's conventions: -i/-o folders, -n denoise level -1 (none) to 3 (default 0),
-s scale (2, 4, 8...), and each output is a PNG with the input's name (`a.jpg` → `a.png`).
A scale above 2 runs the 2x network again on its own output; only the first pass denoises.
Resumable as the project stage is: a manifest in the output folder records each output's
source and settings (the engine included), and a rerun redoes only missing, stale or
differently made outputs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from bakery.errors import BakeryError, StageFailures
from bakery.fsutil import remove_stale_temps
from bakery.progress import progress, spinner
from bakery.upscale.stage import Manifest, open_png, plan, save_png
from bakery.upscale.waifu2x import DEFAULT_ENGINE

log = logging.getLogger("bakery.upscale")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MANIFEST_NAME = ".bakery-upscale.json"
NOISE_ARGS = {"-1": "none", "none": "none", "0": "0", "1": "1", "2": "2", "3": "3"}


def noise_level(value: str) -> str:
    try:
        return NOISE_ARGS[str(value).strip()]
    except KeyError:
        raise BakeryError(f"-n/--noise: must be -1 (none), 0, 1, 2 or 3, got {value!r}") from None


def passes_for(scale: int) -> int:
    """-s 2 → one 2x pass, 4 → two, 8 → three."""
    if scale < 2 or scale & (scale - 1):
        raise BakeryError(f"-s/--scale: must be 2, 4, 8 or another power of two (waifu2x enlarges 2x "
                          f"per pass), got {scale}")
    return scale.bit_length() - 1


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise BakeryError(f"--in: {'not a folder' if folder.exists() else 'folder not found'}: {folder}")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise BakeryError(f"--in: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    by_output: dict[str, Path] = {}
    for path in images:
        other = by_output.setdefault(path.stem + ".png", path)
        if other is not path:
            raise BakeryError(f"--in: {other.name} and {path.name} would both become {path.stem}.png")
    return images


def run_upscale_folder(args) -> None:
    from bakery.preflight import ensure_writable

    src_dir, out_dir = Path(args.input), Path(args.output)
    noise = noise_level("0" if args.noise is None else args.noise)  # waifu2x-ncnn-vulkan's default
    passes = passes_for(2 if args.scale is None else int(args.scale))
    engine = getattr(args, "engine", None) or DEFAULT_ENGINE
    images = list_images(src_dir)
    if out_dir.resolve() == src_dir.resolve():
        raise BakeryError(f"--out must differ from --in ({src_dir}): outputs would replace the inputs")
    ensure_writable(out_dir, "--out folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    settings = {"method": "waifu2x", "engine": engine, "noise": noise, "scale": 2 ** passes}
    manifest = Manifest(out_dir / MANIFEST_NAME, settings, "upscale")
    todo, done, failures = plan(list(range(len(images))), lambda i: images[i],
                                lambda i: out_dir / (images[i].stem + ".png"), manifest)
    log.info("upscale: %d of %d image(s) in %s to enlarge %dx (waifu2x upconv_7, noise %s, %s), %d already done",
             len(todo), len(images), src_dir, 2 ** passes, noise, engine, len(done))
    started = time.monotonic()
    if todo:
        try:
            upscale_files(todo, engine, noise, passes, manifest, failures, args.quiet)
        finally:
            manifest.close()
    written = len(todo) - sum(1 for job in todo if job.id in failures)
    if todo:
        log.info("upscale: wrote %d image(s) (%dx) to %s in %.1f s", written, 2 ** passes, out_dir,
                 time.monotonic() - started)
    else:
        log.info("upscale: nothing to do: the %d image(s) in %s are up to date", len(done), out_dir)
    if failures:
        listed = "; ".join(msg for _, msg in sorted(failures.items())[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        raise StageFailures(f"upscale: {len(failures)} of {len(images)} images failed: {listed}{more}")


def upscale_files(todo, engine: str, noise: str, passes: int, manifest: Manifest, failures: dict,
                  quiet: bool) -> None:
    from bakery.upscale.waifu2x import make_waifu2x

    with spinner("loading waifu2x", quiet=quiet):
        first = make_waifu2x(engine, noise)
        later = first if noise == "none" or passes == 1 else make_waifu2x(engine, "none")
    bar = progress(todo, desc="upscale", total=len(todo), unit="img", quiet=quiet)
    for job in bar:
        try:
            img = open_png(job.src)
        except BakeryError as exc:
            failures[job.id] = str(exc)
            log.error("upscale: %s", exc)
            continue
        icc = img.info.get("icc_profile")
        for step in range(passes):
            img = (first if step == 0 else later).upscale_images([img])[0]
        manifest.record(job, save_png(img, job.dst, icc))
