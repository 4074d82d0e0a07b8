"""`bakery figures`: a 10×10 contact sheet and a truncation sweep of the configured model.

contact-sheet.png: 100 consecutive seeds from --seed, at the psi and noise mode of the
first band in [images]. truncation-sweep.png: one row per seed (6 rows from --seed), one
column per psi in SWEEP_PSIS, as in NVIDIA's StyleGAN truncation figures; psi = 0 is the
average image, negative psi the "opposite" of each seed.
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
MAX_CELL = 128  # larger models are shown downscaled so a figure stays a README-sized image


def grid(images: np.ndarray, cols: int, cell: int) -> np.ndarray:
    """[N, H, W, C] uint8 → one [rows·cell, cols·cell, C] image (cells resized if needed)."""
    from PIL import Image

    n = len(images)
    rows = -(-n // cols)
    sheet = np.zeros((rows * cell, cols * cell, images.shape[-1]), np.uint8)
    for i, img in enumerate(images):
        if img.shape[0] != cell:
            mode = "L" if img.shape[-1] == 1 else "RGB"
            pil = Image.fromarray(img[..., 0] if mode == "L" else img, mode).resize((cell, cell), Image.LANCZOS)
            img = np.asarray(pil).reshape(cell, cell, -1)
        r, c = divmod(i, cols)
        sheet[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = img
    return sheet


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


def render_many(renderer, seeds, psis, noise: str, batch: int, class_index: int | None = None) -> np.ndarray:
    out = []
    for i in range(0, len(seeds), batch):
        n = len(seeds[i:i + batch])
        out.append(renderer.render_seeds(seeds[i:i + batch], psis[i:i + batch], [noise] * n,
                                         classes=[class_index] * n)["uint8"])
    return np.concatenate(out)


def run_figures(config, args) -> None:
    from bakery.images.checkpoints import check_band_classes, load_generator
    from bakery.images.generator import Renderer
    from bakery.images.stage import resolve_model

    cfg = config.images
    out_dir = Path(args.out) if getattr(args, "out", None) else config.build_dir / "figures"
    first = int(getattr(args, "seed", 0) or 0)
    if first < 0:
        raise BakeryError(f"--seed must be ≥ 0, got {first}")
    model = load_generator(resolve_model(cfg))
    gen = model.generator
    renderer = Renderer(gen, cfg.truncation_cutoff)
    band = cfg.bands[0]
    check_band_classes(gen, cfg.bands[:1])  # the figures use the first band's class
    batch = getattr(args, "batch_size", None) or cfg.batch_size
    cell = min(gen.resolution, MAX_CELL)
    log.info("figures: %s %dpx model, seeds from %d → %s", gen.kind, gen.resolution, first, out_dir)

    seeds = list(range(first, first + SHEET_GRID * SHEET_GRID))
    sheet = render_many(renderer, seeds, [band.psi] * len(seeds), band.noise, batch, band.class_index)
    write_bytes_atomic(out_dir / "contact-sheet.png", png_bytes(grid(sheet, SHEET_GRID, cell)))

    seeds = [s for s in range(first, first + SWEEP_ROWS) for _ in SWEEP_PSIS]
    psis = [p for _ in range(SWEEP_ROWS) for p in SWEEP_PSIS]
    sweep = render_many(renderer, seeds, psis, band.noise, batch, band.class_index)
    write_bytes_atomic(out_dir / "truncation-sweep.png", png_bytes(grid(sweep, len(SWEEP_PSIS), cell)))
    write_style_mixing(renderer, first, band, batch, cell, out_dir)
    log.info("figures: wrote %s and %s (psi %s, noise %s for the sheet; psi %s across the sweep)",
             out_dir / "contact-sheet.png", out_dir / "truncation-sweep.png", band.psi, band.noise,
             ", ".join(f"{p:g}" for p in SWEEP_PSIS))


# -- style mixing (the StyleGAN paper's Figure 3) --------------------------------------------

MIX_TARGETS = 4  # rows: the faces that keep their other styles
MIX_STYLES = 5   # columns: the faces whose styles are copied in


def style_mixing(renderer, targets, styles, rows: range, psi: float, noise: str, batch: int):
    """Top row: the style seeds; left column: the target seeds; cell (t, s): target t's W with
    the `rows` of style s copied in (its noise stays the target's). Returns the cells in
    row-major order ([(1 + T)·(1 + S), H, W, C] uint8, the top-left blank) and the mixed
    ws [T, S, num_ws, w_dim]."""
    from bakery.images.generator import seed_inputs
    from bakery.video.frames import padded
    from bakery.video.latents import mix_rows

    gen = renderer.gen

    def inputs(seeds):
        pairs = [seed_inputs(gen, s, noise) for s in seeds]
        return renderer.map(np.stack([z for z, _ in pairs]), np.full(len(seeds), psi, np.float32)), [n for _, n in pairs]

    def synthesize(ws, noise_sets):
        stacked = [np.stack([n[k] for n in noise_sets]) for k in range(len(gen.noise_shapes))]
        return padded(lambda w, *ns: renderer.synthesize(w, list(ns))["uint8"], batch, ws, *stacked)

    target_ws, target_noise = inputs(targets)
    style_ws, style_noise = inputs(styles)
    mixed = mix_rows(target_ws, style_ws, rows).transpose(1, 0, 2, 3)  # [T, S, ...]
    top = synthesize(style_ws, style_noise)
    rows_out = [np.zeros_like(top[:1]), top]
    for t in range(len(targets)):
        cells = synthesize(np.concatenate([target_ws[t:t + 1], mixed[t]]), [target_noise[t]] * (1 + len(styles)))
        rows_out.append(cells)
    return np.concatenate(rows_out), mixed


def write_style_mixing(renderer, first: int, band, batch: int, cell: int, out_dir: Path) -> None:
    from bakery.video.latents import named_rows

    targets = list(range(first, first + MIX_TARGETS))
    styles = list(range(first + MIX_TARGETS, first + MIX_TARGETS + MIX_STYLES))
    rows = named_rows("coarse", renderer.gen.num_ws)
    cells, _ = style_mixing(renderer, targets, styles, rows, band.psi, band.noise, batch)
    write_bytes_atomic(out_dir / "style-mixing.png", png_bytes(grid(cells, 1 + MIX_STYLES, cell)))
    log.info("figures: wrote %s (targets %s, styles %s, coarse W rows %d-%d)", out_dir / "style-mixing.png",
             targets, styles, rows.start, rows.stop - 1)
