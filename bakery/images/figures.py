"""`bakery figures`: a 10×10 contact sheet and a truncation sweep of the configured model.

contact-sheet.png: 100 consecutive seeds from --seed, at the psi and noise mode of the
first band in [images]. truncation-sweep.png: one row per seed (6 rows from --seed), one
column per psi in SWEEP_PSIS (labelled above the columns), as in NVIDIA's StyleGAN truncation
figures; psi = 0 is the average image, negative psi the "opposite" of each seed. Each cell is
128-256 px whatever the model's resolution.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from bakery.errors import BakeryError
from bakery.fsutil import write_bytes_atomic

log = logging.getLogger("bakery.figures")

SWEEP_PSIS = (1.0, 0.7, 0.5, 0.25, 0.0, -0.25, -0.5, -1.0)
SHEET_GRID = 10
SWEEP_ROWS = 6
MIN_CELL = 128  # smaller models are enlarged: a face below 128 px shows nothing in a README
MAX_CELL = 256  # larger models are shown downscaled so a figure stays a README-sized image


def grid(images: np.ndarray, cols: int, cell: int) -> np.ndarray:
    """[N, H, W, C] uint8 → one [rows·cell, cols·cell, C] image (cells resized if needed)."""
    from PIL import Image

    n = len(images)
    rows = -(-n // cols)
    sheet = np.zeros((rows * cell, cols * cell, images.shape[-1]), np.uint8)
    for i, img in enumerate(images):
        if img.shape[0] != cell:
            mode = "L" if img.shape[-1] == 1 else "RGB"
            # whole-number enlargements repeat pixels (a small model's output shown as it is)
            resample = Image.NEAREST if cell % img.shape[0] == 0 else Image.LANCZOS
            pil = Image.fromarray(img[..., 0] if mode == "L" else img, mode).resize((cell, cell), resample)
            img = np.asarray(pil).reshape(cell, cell, -1)
        r, c = divmod(i, cols)
        sheet[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = img
    return sheet


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


def render_many(renderer, seeds, psis, noise: str, batch: int, bar=None) -> np.ndarray:
    out = []
    for i in range(0, len(seeds), batch):
        out.append(renderer.render_seeds(seeds[i:i + batch], psis[i:i + batch],
                                         [noise] * len(seeds[i:i + batch]))["uint8"])
        if bar is not None:
            bar.update(len(seeds[i:i + batch]))
    return np.concatenate(out)


def cell_size(resolution: int) -> int:
    """Each face at least MIN_CELL px (small models are enlarged), at most MAX_CELL."""
    return max(MIN_CELL, min(resolution, MAX_CELL))


def psi_label(psi: float) -> str:
    return f"psi = {psi:g}"  # ASCII: Pillow's default font has no ψ or − glyphs


def label_columns(sheet: np.ndarray, labels: list[str], cell: int) -> np.ndarray:
    """A white strip above the grid with each column's label centred over its column."""
    from PIL import Image, ImageDraw, ImageFont

    height = max(24, cell // 5)
    font = ImageFont.load_default(size=int(height * 0.6))
    strip = Image.new("RGB", (sheet.shape[1], height), "white")
    draw = ImageDraw.Draw(strip)
    for col, text in enumerate(labels):
        draw.text((col * cell + cell / 2, height / 2), text, fill="black", font=font, anchor="mm")
    body = sheet if sheet.shape[-1] == 3 else np.repeat(sheet, 3, axis=-1)
    return np.concatenate([np.asarray(strip), body])


def draw_figures(model_path: Path, psi: float, noise: str, cutoff, first: int, batch: int,
                 out_dir: Path, quiet: bool) -> tuple[Path, Path]:
    """contact-sheet.png (100 seeds at psi) and truncation-sweep.png (labelled psi columns)."""
    from bakery.images.quick import load_renderer
    from bakery.preflight import ensure_writable
    from bakery.progress import progress

    if first < 0:
        raise BakeryError(f"--seed must be ≥ 0, got {first}")
    ensure_writable(out_dir, "figures folder")
    model, renderer = load_renderer(model_path, cutoff, quiet)
    gen = model.generator
    cell = cell_size(gen.resolution)
    log.info("figures: %s %dpx model, seeds from %d, %d px cells → %s", gen.kind, gen.resolution, first, cell, out_dir)
    sheet_seeds = list(range(first, first + SHEET_GRID * SHEET_GRID))
    sweep_seeds = [s for s in range(first, first + SWEEP_ROWS) for _ in SWEEP_PSIS]
    sweep_psis = [p for _ in range(SWEEP_ROWS) for p in SWEEP_PSIS]
    bar = progress(None, desc="figures", total=len(sheet_seeds) + len(sweep_seeds), unit="img", quiet=quiet)
    try:
        sheet = render_many(renderer, sheet_seeds, [psi] * len(sheet_seeds), noise, batch, bar)
        sheet_path = out_dir / "contact-sheet.png"
        write_bytes_atomic(sheet_path, png_bytes(grid(sheet, SHEET_GRID, cell)))
        sweep = render_many(renderer, sweep_seeds, sweep_psis, noise, batch, bar)
    finally:
        bar.close()
    sweep_image = label_columns(grid(sweep, len(SWEEP_PSIS), cell), [psi_label(p) for p in SWEEP_PSIS], cell)
    sweep_path = out_dir / "truncation-sweep.png"
    write_bytes_atomic(sweep_path, png_bytes(sweep_image))
    log.info("figures: wrote %s and %s (psi %g, noise %s for the sheet; psi %s across the sweep)",
             sheet_path, sweep_path, psi, noise, ", ".join(f"{p:g}" for p in SWEEP_PSIS))
    return sheet_path, sweep_path


def run_figures(config, args) -> None:
    from bakery.images.stage import resolve_model

    cfg = config.images
    band = cfg.bands[0]
    out_dir = Path(args.out) if getattr(args, "out", None) else config.build_dir / "figures"
    psi = band.psi if getattr(args, "psi", None) is None else float(args.psi)
    noise = getattr(args, "noise", None) or band.noise
    draw_figures(resolve_model(cfg), psi, noise, cfg.truncation_cutoff, int(getattr(args, "seed", 0) or 0),
                 getattr(args, "batch_size", None) or cfg.batch_size, out_dir, args.quiet)


def run_quick_figures(args) -> None:
    """`bakery figures --model X.pkl`: no project; psi from --psi (default 0.7), into --out."""
    from bakery.images.quick import check_psi_noise_batch, model_file

    psi, noise = 0.7 if args.psi is None else float(args.psi), args.noise or "const"
    batch = 8 if args.batch_size is None else args.batch_size
    check_psi_noise_batch(psi, noise, batch)
    draw_figures(model_file(args.model), psi, noise, None, int(args.seed or 0), batch,
                 Path(args.out or "figures"), args.quiet)
