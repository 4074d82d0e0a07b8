"""`bakery generate --model X.pkl --seeds 0-9,20 --psi 0.7`: NVIDIA's generate.py, no project needed.

Writes seed0000.png, seed0001.png, ... into --out (default `out`), as NVIDIA's scripts name them.
A class-conditional checkpoint takes `--class N` (NVIDIA's `--class`), the same class for every
seed; a StyleGAN3 one takes `--translate TX,TY` and `--rotate DEG` (NVIDIA's gen_images.py). Each PNG carries its own record in a tEXt chunk (seed, psi, noise mode, truncation cutoff,
the class if any and the checkpoint's sha256), so the folder needs no manifest: a rerun skips every file whose
record matches and whose last chunk is IEND (written whole), and renders the rest. PNGs are
written to a temp file and renamed, so an interrupted run leaves whole files or none.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from bakery.errors import BakeryError
from bakery.fsutil import remove_stale_temps, write_bytes_atomic
from bakery.images.config import MAX_BATCH, NOISE_MODES
from bakery.progress import progress, spinner

log = logging.getLogger("bakery.images")

RECORD_KEY = "bakery"  # the PNG tEXt keyword holding the render record
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the 12 bytes that end every complete PNG


def seed_file(out_dir: Path, seed: int) -> Path:
    return out_dir / f"seed{seed:04d}.png"


def model_file(value) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise BakeryError(f"--model: {'not a file' if path.exists() else 'file not found'}: {path}")
    return path


def seed_list(text: str) -> list[int]:
    from bakery.seeds import SeedListError, parse_seeds

    try:
        return parse_seeds(text)
    except SeedListError as exc:
        raise BakeryError(f"--seeds: {exc}") from None


def check_psi_noise_batch(psi: float, noise: str, batch: int) -> None:
    if not -2.0 <= psi <= 2.0:
        raise BakeryError(f"--psi: {psi:g} is out of range (must be [-2, 2]; 0.7 is the usual balance)")
    if noise not in NOISE_MODES:
        raise BakeryError(f"--noise: must be one of {', '.join(NOISE_MODES)}, got {noise!r}")
    if not 1 <= batch <= MAX_BATCH:
        raise BakeryError(f"--batch-size must be between 1 and {MAX_BATCH}, got {batch}")


def transform_flags(translate: str | None, rotate: float | None) -> dict:
    """--translate TX,TY and --rotate DEG → the record keys ({} when neither moves anything)."""
    import math

    from bakery.images.config import MAX_ROTATE, MAX_TRANSLATE

    pair = (0.0, 0.0)
    if translate is not None:
        try:
            pair = tuple(float(v) for v in translate.split(","))
        except ValueError:
            pair = ()
        if len(pair) != 2 or not all(math.isfinite(v) and abs(v) <= MAX_TRANSLATE for v in pair):
            raise BakeryError(f"--translate: expected two numbers TX,TY within ±{MAX_TRANSLATE:g} "
                              f"(e.g. 0.3,-0.1), got {translate!r}")
    if rotate is not None and not (math.isfinite(rotate) and abs(rotate) <= MAX_ROTATE):
        raise BakeryError(f"--rotate: {rotate:g} degrees is out of range (must be within ±{MAX_ROTATE:g})")
    if not any(pair) and not rotate:
        return {}
    return {"translate": list(pair), "rotate": float(rotate or 0.0)}


def check_transform(gen, transform: dict, model_path: Path) -> None:
    if transform and not gen.takes_transform:
        flag = "--translate" if any(transform["translate"]) else "--rotate"
        raise BakeryError(f"{flag}: only StyleGAN3 models take translate/rotate; {model_path.name} is {gen.kind}")


def read_record(path: Path) -> dict | None:
    """The render record of a complete PNG written by this module, else None."""
    from PIL import Image

    try:
        with open(path, "rb") as fh:
            fh.seek(-len(PNG_END), 2)
            if fh.read() != PNG_END:
                return None
        with Image.open(path) as img:
            return json.loads(img.text.get(RECORD_KEY, "null"))
    except (OSError, ValueError, SyntaxError):
        return None


def png_with_record(pixels, record: dict) -> bytes:
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(RECORD_KEY, json.dumps(record, sort_keys=True))
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
        buf, format="PNG", compress_level=6, pnginfo=info)
    return buf.getvalue()


def check_class(gen, class_index: int | None, model_path: Path) -> None:
    """--class suits the model: required by a class-conditional one, refused by the others."""
    name = model_path.name
    if gen.c_dim == 0 and class_index is not None:
        raise BakeryError(f"--class {class_index}: {name} is not class-conditional; drop --class")
    if gen.c_dim > 0 and class_index is None:
        raise BakeryError(f"--model {name}: the model is class-conditional ({gen.c_dim} classes): "
                          f"pass --class N, N in 0-{gen.c_dim - 1}")
    if class_index is not None and not 0 <= class_index < gen.c_dim:
        raise BakeryError(f"--class {class_index}: out of range: {name} has classes 0-{gen.c_dim - 1}")


def load_renderer(model_path: Path, cutoff: int | None, quiet: bool):
    """Checkpoint → (LoadedModel, Renderer), with a spinner while the checkpoint loads."""
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer

    with spinner(f"loading {model_path.name}", quiet=quiet) as s:
        model = load_generator(model_path)
        renderer = Renderer(model.generator, cutoff)
    gen = model.generator
    log.info("model: %s, %d px, loaded in %.1f s, on %s", gen.kind, gen.resolution, s.elapsed, renderer.device)
    return model, renderer


def render_batches(renderer, seeds: list[int], psi: float, noise: str, batch: int, quiet: bool, desc: str,
                   class_index: int | None = None, transform=None):
    """Yield (seeds, uint8 images) per batch; a spinner covers the first batch's graph tracing."""
    bar = progress(None, desc=desc, total=len(seeds), unit="img", quiet=quiet)
    try:
        for start in range(0, len(seeds), batch):
            chunk = seeds[start:start + batch]
            tracing = start == 0 or len(chunk) != batch  # a new batch size traces a new graph
            with spinner("tracing the generator graph", quiet=quiet or not tracing, delay=1.0):
                out = renderer.render_seeds(chunk, [psi] * len(chunk), [noise] * len(chunk),
                                            classes=[class_index] * len(chunk), transforms=[transform] * len(chunk))
            yield chunk, out["uint8"]
            bar.update(len(chunk))
    finally:
        bar.close()


def run_quick_generate(args) -> None:
    from bakery.images.pickle_loader import sha256_of
    from bakery.preflight import ensure_writable

    model_path = model_file(args.model)
    seeds = seed_list(args.seeds)
    psi = 1.0 if args.psi is None else float(args.psi)  # NVIDIA's default: no truncation
    noise, batch = args.noise or "const", 8 if args.batch_size is None else int(args.batch_size)
    check_psi_noise_batch(psi, noise, batch)
    out_dir = ensure_writable(Path(args.out or "out"), "--out folder")
    remove_stale_temps(out_dir)
    sha256 = sha256_of(model_path)
    class_index = getattr(args, "class_index", None)
    transform = transform_flags(getattr(args, "translate", None), getattr(args, "rotate", None))
    wanted = {s: {"seed": s, "psi": psi, "noise": noise, "truncation_cutoff": None, "model_sha256": sha256,
                  **transform} for s in seeds}
    if class_index is not None:  # only then: records of unconditional renders stay as they were
        for record in wanted.values():
            record["class"] = class_index
    todo = [s for s in seeds if read_record(seed_file(out_dir, s)) != wanted[s]]
    from bakery.seeds import format_seeds

    log.info("generate: %d of %d seed(s) to render into %s (%d already there), psi %g, noise %s, %smodel %s",
             len(todo), len(seeds), out_dir, len(seeds) - len(todo), psi, noise,
             "" if class_index is None else f"class {class_index}, ", model_path.name)
    if not todo:
        return
    model, renderer = load_renderer(model_path, None, args.quiet)
    if model.sha256 != sha256:
        raise BakeryError(f"--model: {model_path} changed while loading; run again")
    check_class(model.generator, class_index, model_path)
    check_transform(model.generator, transform, model_path)
    from bakery.images.generator import record_transform

    started = time.monotonic()
    for chunk, images in render_batches(renderer, todo, psi, noise, batch, args.quiet, "generate",
                                        class_index, record_transform(transform)):
        for seed, pixels in zip(chunk, images):
            write_bytes_atomic(seed_file(out_dir, seed), png_with_record(pixels, wanted[seed]))
    log.info("generate: wrote %d image(s) (seeds %s) to %s in %.1f s", len(todo), format_seeds(todo),
             out_dir, time.monotonic() - started)
