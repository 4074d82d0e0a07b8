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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bakery.errors import BakeryError
from bakery.fsutil import write_bytes_atomic
from bakery.seeds import MAX_SEED, expand_ranges

log = logging.getLogger("bakery.figures")

SWEEP_PSIS = (1.0, 0.7, 0.5, 0.25, 0.0, -0.25, -0.5, -1.0)
SHEET_GRID = 10
SWEEP_ROWS = 6
MIN_CELL = 128  # smaller models are enlarged: a face below 128 px shows nothing in a README
MAX_CELL = 256  # larger models are shown downscaled so a figure stays a README-sized image


def grid(images: np.ndarray, cols: int, cell: int) -> np.ndarray:
    """[N, H, W, C] uint8 → one [rows·cell, cols·cell, C] image (cells resized if needed)."""
    n = len(images)
    rows = -(-n // cols)
    sheet = np.zeros((rows * cell, cols * cell, images.shape[-1]), np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = fit_cell(img, cell)
    return sheet


def fit_cell(img: np.ndarray, cell: int) -> np.ndarray:
    """[H, W, C] uint8 → [cell, cell, C]: whole-number enlargements repeat pixels (a small model's
    output shown as it is), anything else is resampled with Lanczos."""
    from PIL import Image

    if img.shape[0] == cell:
        return img
    mode = "L" if img.shape[-1] == 1 else "RGB"
    resample = Image.NEAREST if cell % img.shape[0] == 0 else Image.LANCZOS
    pil = Image.fromarray(img[..., 0] if mode == "L" else img, mode).resize((cell, cell), resample)
    return np.asarray(pil).reshape(cell, cell, -1)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


def render_many(renderer, seeds, psis, noise: str, batch: int, bar=None, class_index: int | None = None) -> np.ndarray:
    out = []
    for i in range(0, len(seeds), batch):
        n = len(seeds[i:i + batch])
        out.append(renderer.render_seeds(seeds[i:i + batch], psis[i:i + batch], [noise] * n,
                                         classes=[class_index] * n)["uint8"])
        if bar is not None:
            bar.update(n)
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
                 out_dir: Path, quiet: bool, class_index: int | None = None,
                 class_flag: bool = False, mix: "MixOptions | None" = None) -> tuple[Path, Path]:
    """contact-sheet.png (100 seeds at psi), truncation-sweep.png (labelled psi columns) and
    style-mixing.png (`mix`: NVIDIA's --rows/--cols/--styles, by default coarse styles of seeds
    from `first`), of one class for a class-conditional model (class_flag: the class came from
    --class, so errors about it name the flag)."""
    from bakery.images.generator import class_labels
    from bakery.images.quick import check_class, check_psi_noise_batch, load_renderer
    from bakery.preflight import ensure_writable
    from bakery.progress import progress

    last = first + SHEET_GRID * SHEET_GRID - 1  # the contact sheet's seeds; the sweep's are among them
    if not 0 <= first <= last <= MAX_SEED:
        raise BakeryError(f"--seed must be between 0 and {MAX_SEED - SHEET_GRID * SHEET_GRID + 1} (the sheet's "
                          f"{SHEET_GRID * SHEET_GRID} seeds from it must stay within 2**32-1), got {first}")
    check_psi_noise_batch(psi, noise, batch)
    mix = mix or MixOptions()
    targets, styles = mix.seeds(first)  # seed lists checked before the model is loaded
    ensure_writable(out_dir, "figures folder")
    model, renderer = load_renderer(model_path, cutoff, quiet)
    gen = model.generator
    if class_flag:
        check_class(gen, class_index, model_path)
    class_labels(gen, [class_index])  # a conditional model needs a class, others refuse one
    w_rows = mix.w_rows(gen.num_ws)  # before any rendering: a bad --styles costs no time
    cell = cell_size(gen.resolution)
    log.info("figures: %s %dpx model, seeds from %d, %d px cells → %s", gen.kind, gen.resolution, first, cell, out_dir)
    sheet_seeds = list(range(first, first + SHEET_GRID * SHEET_GRID))
    sweep_seeds = [s for s in range(first, first + SWEEP_ROWS) for _ in SWEEP_PSIS]
    sweep_psis = [p for _ in range(SWEEP_ROWS) for p in SWEEP_PSIS]
    bar = progress(None, desc="figures", total=len(sheet_seeds) + len(sweep_seeds), unit="img", quiet=quiet)
    try:
        sheet = render_many(renderer, sheet_seeds, [psi] * len(sheet_seeds), noise, batch, bar, class_index)
        sheet_path = out_dir / "contact-sheet.png"
        write_bytes_atomic(sheet_path, png_bytes(grid(sheet, SHEET_GRID, cell)))
        sweep = render_many(renderer, sweep_seeds, sweep_psis, noise, batch, bar, class_index)
    finally:
        bar.close()
    sweep_image = label_columns(grid(sweep, len(SWEEP_PSIS), cell), [psi_label(p) for p in SWEEP_PSIS], cell)
    sweep_path = out_dir / "truncation-sweep.png"
    write_bytes_atomic(sweep_path, png_bytes(sweep_image))
    write_style_mixing(renderer, targets, styles, w_rows, psi, noise, batch, cell, out_dir, class_index)
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
    flag_class = getattr(args, "class_index", None)  # --class overrides the first band's class
    draw_figures(resolve_model(cfg), psi, noise, cfg.truncation_cutoff, int(getattr(args, "seed", 0) or 0),
                 getattr(args, "batch_size", None) or cfg.batch_size, out_dir, args.quiet,
                 band.class_index if flag_class is None else flag_class, class_flag=flag_class is not None,
                 mix=MixOptions.from_args(args))


def run_quick_figures(args) -> None:
    """`bakery figures --model X.pkl`: no project; psi from --psi (default 0.7), into --out."""
    from bakery.images.quick import check_psi_noise_batch, model_file

    psi, noise = 0.7 if args.psi is None else float(args.psi), args.noise or "const"
    batch = 8 if args.batch_size is None else args.batch_size
    check_psi_noise_batch(psi, noise, batch)
    draw_figures(model_file(args.model), psi, noise, None, int(args.seed or 0), batch,
                 Path(args.out or "figures"), args.quiet, getattr(args, "class_index", None), class_flag=True,
                 mix=MixOptions.from_args(args))


# -- style mixing (the StyleGAN paper's Figure 3, NVIDIA's style_mixing.py) ------------------

MIX_TARGETS = 4  # default rows: the faces that keep their other styles
MIX_STYLES = 5   # default columns: the faces whose styles are copied in
MAX_MIX_SEEDS = 16  # per side: a 17×17-cell figure; more is a poster, not a figure


@dataclass(frozen=True)
class MixOptions:
    """NVIDIA's style_mixing.py options: --rows and --cols are seed lists ("85,100,75" or
    "0-4"), --styles the W rows each column's seed gives ("0-6", NVIDIA's default, or "0,2,4").
    None: the bakery's defaults (4 rows from --seed, the next 5 seeds as columns, coarse rows)."""

    rows: str | None = None
    cols: str | None = None
    styles: str | None = None

    @classmethod
    def from_args(cls, args) -> "MixOptions":
        return cls(getattr(args, "rows", None), getattr(args, "cols", None), getattr(args, "styles", None))

    def seeds(self, first: int) -> tuple[list[int], list[int]]:
        """(row seeds, column seeds); --styles' syntax is checked here too (its rows need the model)."""
        if self.styles is not None:
            _ranges("--styles", self.styles)
        targets = _seed_option("--rows", self.rows, list(range(first, first + MIX_TARGETS)))
        after = first + MIX_TARGETS
        styles = _seed_option("--cols", self.cols, list(range(after, after + MIX_STYLES)))
        return targets, styles

    def w_rows(self, num_ws: int) -> list[int]:
        """The W rows copied from the column seeds, each inside this model's [0, num_ws)."""
        from bakery.video.latents import named_rows

        if self.styles is None:
            return list(named_rows("coarse", num_ws))
        ranges = _ranges("--styles", self.styles)
        last = max(b for _, b in ranges)
        if last >= num_ws:
            raise BakeryError(f"--styles {self.styles}: W row {last} does not exist: this model has {num_ws} "
                              f"W rows (0-{num_ws - 1})")
        return expand_ranges(ranges)


def _ranges(flag: str, text: str) -> list[tuple[int, int]]:
    from bakery.seeds import SeedListError, parse_seed_ranges

    try:
        return parse_seed_ranges(text)
    except SeedListError as exc:
        raise BakeryError(f"{flag}: {exc}") from None


def _seed_option(flag: str, text: str | None, default: list[int]) -> list[int]:
    if text is None:
        return default
    ranges = _ranges(flag, text)
    count = sum(b - a + 1 for a, b in ranges)  # counted before expanding: "0-4000000000" is no list
    if count > MAX_MIX_SEEDS:
        raise BakeryError(f"{flag} {text}: {count} seeds; the style-mixing figure takes at most {MAX_MIX_SEEDS} "
                          "rows and as many columns")
    return expand_ranges(ranges)


def mix_w_rows(target_ws: np.ndarray, style_ws: np.ndarray, rows) -> np.ndarray:
    """target_ws [T, num_ws, w_dim] × style_ws [S, num_ws, w_dim] → [T, S, num_ws, w_dim]: each
    target's W with `rows` (any W rows, in any order) taken from each style's W, as NVIDIA's
    `w[col_styles] = w_dict[col_seed][col_styles]`."""
    index = np.asarray(list(rows), dtype=np.intp)
    mixed = np.repeat(target_ws[:, None], len(style_ws), axis=1)
    mixed[:, :, index] = style_ws[None][:, :, index]
    return mixed


def style_mixing(renderer, targets, styles, rows, psi: float, noise: str, batch: int,
                 class_index: int | None = None, fit=None):
    """Top row: the style seeds; left column: the target seeds; cell (t, s): target t's W with
    the W `rows` of style s copied in (its noise stays the target's). Returns the cells in
    row-major order ([(1 + T)·(1 + S), H, W, C] uint8, the top-left blank; `fit` maps each
    row of cells, e.g. to a smaller size, as it is drawn) and the mixed ws [T, S, num_ws, w_dim]."""
    from bakery.images.generator import class_labels, seed_inputs
    from bakery.video.frames import padded

    gen = renderer.gen
    fit = fit or (lambda cells: cells)

    def inputs(seeds):
        pairs = [seed_inputs(gen, s, noise) for s in seeds]
        c = class_labels(gen, [class_index] * len(seeds))
        return renderer.map(np.stack([z for z, _ in pairs]), np.full(len(seeds), psi, np.float32), c), [n for _, n in pairs]

    def synthesize(ws, noise_sets):
        stacked = [np.stack([n[k] for n in noise_sets]) for k in range(len(gen.noise_shapes))]
        return padded(lambda w, *ns: renderer.synthesize(w, list(ns))["uint8"], batch, ws, *stacked)

    target_ws, target_noise = inputs(targets)
    style_ws, style_noise = inputs(styles)
    mixed = mix_w_rows(target_ws, style_ws, rows)
    top = fit(synthesize(style_ws, style_noise))
    rows_out = [np.zeros_like(top[:1]), top]
    for t in range(len(targets)):
        cells = synthesize(np.concatenate([target_ws[t:t + 1], mixed[t]]), [target_noise[t]] * (1 + len(styles)))
        rows_out.append(fit(cells))
    return np.concatenate(rows_out), mixed


def write_style_mixing(renderer, targets: list[int], styles: list[int], rows: list[int], psi: float, noise: str,
                       batch: int, cell: int, out_dir: Path, class_index: int | None = None) -> None:
    from bakery.seeds import format_seeds

    def fit(cells):  # each row shrunk to the figure's cells as it comes: memory stays small
        return np.stack([fit_cell(img, cell) for img in cells])

    cells, _ = style_mixing(renderer, targets, styles, rows, psi, noise, batch, class_index, fit=fit)
    path = out_dir / "style-mixing.png"
    write_bytes_atomic(path, png_bytes(grid(cells, 1 + len(styles), cell)))
    log.info("figures: wrote %s (rows: seeds %s; columns: seeds %s; W rows %s from the columns)", path,
             ",".join(map(str, targets)), ",".join(map(str, styles)), format_seeds(rows))
