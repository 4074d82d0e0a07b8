"""`bakery upscale -i IN -o OUT [-n NOISE] [-s SCALE] [-f FORMAT] [-t TILE] [--engine E]`: waifu2x on
one image or on any folder of images.

waifu2x-ncnn-vulkan's conventions: -i/-o are two files (`-i a.jpg -o a.png`) or two folders,
-n denoise level -1 (none) to 3 (default 0), -s scale (2, 4, 8...), -f output format (png, jpg
or webp; a file's format comes from the name given to -o), -t tile size (0 = auto). In folder
mode each output takes the input's name and the format's extension (`a.jpg` → `a.png`).
A scale above 2 runs the 2x network again on its own output; only the first pass denoises.
The tile size never changes the result (tiles are cut with the network's whole receptive
field, bakery/upscale/waifu2x.py), only the memory a picture needs.
Folder mode is resumable as the project stage is: a manifest in the output folder records each
output's source and settings (the engine and format included), and a rerun redoes only missing,
stale or differently made outputs. A single file is simply made again, as the reference tool does.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

from PIL import Image

from bakery.errors import BakeryError, StageFailures
from bakery.fsutil import remove_stale_temps, write_bytes_atomic
from bakery.progress import progress, spinner
from bakery.upscale.stage import PNG_LEVEL, Manifest, decode_png, plan, read_source
from bakery.upscale.config import DEFAULT_ENGINE

log = logging.getLogger("bakery.upscale")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MANIFEST_NAME = ".bakery-upscale.json"
NOISE_ARGS = {"-1": "none", "none": "none", "0": "0", "1": "1", "2": "2", "3": "3"}
FORMATS = ("png", "jpg", "webp")  # waifu2x-ncnn-vulkan's -f
FORMAT_OF_SUFFIX = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp"}
AUTO_TILE = 512  # -t 0: upscale.tile_size's default, measured fastest on CPU (docs/upscale.md)
MIN_TILE, MAX_TILE = 16, 4096  # upscale.tile_size's range
JPEG_QUALITY = 95  # waifu2x-ncnn-vulkan writes 100; Pillow advises against > 95 (bigger, hardly better)
JPEG_BACKGROUND = (255, 255, 255)  # JPEG has no alpha: transparent areas are laid over white


def noise_level(value: str) -> str:
    try:
        return NOISE_ARGS[str(value).strip()]
    except KeyError:
        raise BakeryError(f"-n/--noise: must be -1 (none), 0, 1, 2 or 3, got {value!r}") from None


MAX_SCALE = 32  # waifu2x-ncnn-vulkan's largest -s; one 512 px face becomes 16384 px


def passes_for(scale: int) -> int:
    """-s 2 → one 2x pass, 4 → two, 8 → three."""
    if scale < 2 or scale > MAX_SCALE or scale & (scale - 1):
        raise BakeryError(f"-s/--scale: must be 2, 4, 8, 16 or 32 (waifu2x enlarges 2x per pass), got {scale}")
    return scale.bit_length() - 1


def tile_size(value: int | None) -> int:
    """-t as waifu2x-ncnn-vulkan means it: the tile edge in pixels, 0 (or none given) = auto."""
    if value is None or value == 0:
        return AUTO_TILE
    if not MIN_TILE <= value <= MAX_TILE:
        raise BakeryError(f"-t/--tile-size: must be 0 (auto) or {MIN_TILE}-{MAX_TILE} pixels, got {value}")
    return value


def list_images(folder: Path, suffix: str = ".png") -> list[Path]:
    if not folder.is_dir():
        raise BakeryError(f"--in: {'not a folder' if folder.exists() else 'file or folder not found'}: {folder}")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise BakeryError(f"--in: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    by_output: dict[str, Path] = {}
    for path in images:
        other = by_output.setdefault(path.stem + suffix, path)
        if other is not path:
            raise BakeryError(f"--in: {other.name} and {path.name} would both become {path.stem}{suffix}")
    return images


def open_image(path: Path) -> Image.Image:
    """Decode fully now, so a truncated or corrupt file fails here with one line naming it."""
    return decode_png(read_source(path), path, "the image")


def encode_image(img: Image.Image, fmt: str, icc: bytes | None) -> bytes:
    """The upscaled picture (RGB or RGBA) in `fmt`, keeping the source's ICC profile.

    png: zlib level 1, as every upscaled PNG here; webp: lossless, as waifu2x-ncnn-vulkan's;
    jpg: quality JPEG_QUALITY, no chroma subsampling, alpha laid over white.
    """
    extra = {"icc_profile": icc} if icc else {}
    buffer = io.BytesIO()
    if fmt == "png":
        img.save(buffer, "PNG", compress_level=PNG_LEVEL, **extra)
    elif fmt == "webp":
        img.save(buffer, "WEBP", lossless=True, exact=True, **extra)
    else:
        if img.mode == "RGBA":
            flat = Image.new("RGB", img.size, JPEG_BACKGROUND)
            flat.paste(img, mask=img.getchannel("A"))
            img = flat
        img.save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0, **extra)
    return buffer.getvalue()


def upscale_image(img: Image.Image, first, later, passes: int) -> Image.Image:
    for step in range(passes):
        img = (first if step == 0 else later).upscale_images([img])[0]
    return img


def load_models(engine: str, noise: str, passes: int, tile: int, quiet: bool):
    """(model of the first pass, model of the later ones): only the first pass denoises."""
    from bakery.upscale.engines import make_waifu2x

    with spinner("loading waifu2x", quiet=quiet):
        first = make_waifu2x(engine, noise, tile_size=tile)
        later = first if noise == "none" or passes == 1 else make_waifu2x(engine, "none", tile_size=tile)
    return first, later


def run_upscale_folder(args) -> None:
    """-i/-o: two files or two folders, as waifu2x-ncnn-vulkan takes them."""
    src, dst = Path(args.input), Path(args.output)
    noise = noise_level("0" if args.noise is None else args.noise)  # waifu2x-ncnn-vulkan's default
    passes = passes_for(2 if args.scale is None else int(args.scale))
    engine = getattr(args, "engine", None) or DEFAULT_ENGINE
    tile = tile_size(getattr(args, "tile_size", None))
    if src.is_file():
        return upscale_one_file(args, src, dst, noise, passes, engine, tile)
    fmt = getattr(args, "format", None) or "png"
    images = list_images(src, "." + fmt)
    if dst.resolve() == src.resolve():
        raise BakeryError(f"--out must differ from --in ({src}): outputs would replace the inputs")
    upscale_folder(args, src, dst, images, noise, passes, engine, tile, fmt)


def output_format(dst: Path, given: str | None) -> str:
    """A single output's format is its name's, as in waifu2x-ncnn-vulkan; -f may only agree."""
    fmt = FORMAT_OF_SUFFIX.get(dst.suffix.lower())
    if fmt is None:
        raise BakeryError(f"-o {dst}: name the output .png, .jpg or .webp (its extension is its format)")
    if given is not None and given != fmt:
        raise BakeryError(f"-o {dst}: the name says {fmt} but -f says {given}; make them agree")
    return fmt


def upscale_one_file(args, src: Path, dst: Path, noise: str, passes: int, engine: str, tile: int) -> None:
    from bakery.preflight import ensure_writable

    if dst.is_dir():
        raise BakeryError(f"-o {dst}: is a folder, but -i {src} is one file: give the output file's name "
                          "(or -i a folder)")
    fmt = output_format(dst, getattr(args, "format", None))
    if dst.exists() and dst.samefile(src):
        raise BakeryError(f"--out must differ from --in ({src}): the output would replace the input")
    img = open_image(src)
    ensure_writable(dst.parent, "-o folder")
    first, later = load_models(engine, noise, passes, tile, args.quiet)
    out = upscale_image(img, first, later, passes)
    data = encode_image(out, fmt, img.info.get("icc_profile"))
    dst.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(dst, data)
    log.info("upscale: wrote %s (%dx%d → %dx%d, waifu2x upconv_7 %dx, noise %s, %s, %s bytes)", dst,
             img.width, img.height, out.width, out.height, 2 ** passes, noise, engine, f"{len(data):,}")


def upscale_folder(args, src_dir: Path, out_dir: Path, images: list[Path], noise: str, passes: int,
                   engine: str, tile: int, fmt: str) -> None:
    from bakery.preflight import ensure_writable

    ensure_writable(out_dir, "--out folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    settings = {"method": "waifu2x", "engine": engine, "noise": noise, "scale": 2 ** passes}
    if fmt != "png":  # PNG folders keep the settings earlier versions recorded: no needless redo
        settings["format"] = fmt
    manifest = Manifest(out_dir / MANIFEST_NAME, settings, "upscale")
    todo, done, failures = plan(list(range(len(images))), lambda i: images[i],
                                lambda i: out_dir / (images[i].stem + "." + fmt), manifest)
    log.info("upscale: %d of %d image(s) in %s to enlarge %dx (waifu2x upconv_7, noise %s, %s), %d already done",
             len(todo), len(images), src_dir, 2 ** passes, noise, engine, len(done))
    started = time.monotonic()
    if todo:
        try:
            upscale_files(todo, engine, noise, passes, tile, fmt, manifest, failures, args.quiet)
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


def upscale_files(todo, engine: str, noise: str, passes: int, tile: int, fmt: str, manifest: Manifest,
                  failures: dict, quiet: bool) -> None:
    first, later = load_models(engine, noise, passes, tile, quiet)
    bar = progress(todo, desc="upscale", total=len(todo), unit="img", quiet=quiet)
    for job in bar:
        try:
            img = open_image(job.src)
        except BakeryError as exc:
            failures[job.id] = str(exc)
            log.error("upscale: %s", exc)
            continue
        data = encode_image(upscale_image(img, first, later, passes), fmt, img.info.get("icc_profile"))
        write_bytes_atomic(job.dst, data)
        manifest.record(job, len(data))
