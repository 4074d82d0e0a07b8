"""`bakery rank --model X.pkl --in DIR`: score a folder of images with the checkpoint's own
discriminator, as the StyleGAN anime tutorial's ranking script does, to review or drop the worst.

Conventions (those of the D fixtures, so any folder can be checked against NVIDIA's code):

* the K images are taken in sorted file-name order; pass 0 scores them in that order, pass
  p ≥ 1 in the order `np.random.RandomState(seed + p).permutation(K)` (`shuffles` passes);
* each pass is cut into minibatches of `minibatch` images; the last one is filled by wrapping
  around to the start of the pass's list, and the wrapped slots' logits are not counted;
* each minibatch is one NVIDIA call, `D(img, c)`: its minibatch-stddev groups are its own, so
  many minibatches run side by side give the logits each gives alone;
* an image's score is the float32 mean of its counted logits (one per pass); higher = more
  real to D. Input: uint8 RGB → x / 127.5 − 1; the raw logit, no sigmoid;
* a conditional model takes `--class N` for every image, or the labels of a `dataset.json` in
  the folder (NVIDIA's dataset format, `{"labels": [["file.png", 3], ...]}`), one-hot.

Writes ranks.csv (file, score, pass0 … passP−1; best first; 9 significant digits) atomically,
and optionally a contact sheet of the worst and best images with their scores.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bakery.errors import BakeryError
from bakery.fsutil import atomic_open, write_bytes_atomic

log = logging.getLogger("bakery.images")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
LABELS_FILE = "dataset.json"
CALL_MINIBATCHES = 8  # minibatches per D call at most: enough to keep both pools busy
CALL_PIXELS = 1 << 22  # and at most this many input pixels per call (1024 px models: one minibatch)
CACHE_BYTES = 1 << 30  # decoded images kept between passes up to this much; beyond, decoded per use
MAX_LABELS_BYTES = 64 << 20


@dataclass(frozen=True)
class RankOptions:
    shuffles: int = 5
    seed: int = 0
    minibatch: int = 4
    class_index: int | None = None
    resize: bool = False


@dataclass
class Ranking:
    files: list[str]  # sorted file names, the order of the rows below
    logits: np.ndarray  # [passes, K] float32: each image's counted logit in each pass
    scores: np.ndarray  # [K] float32 mean over passes

    def order(self) -> list[int]:
        """Best first; ties by file name."""
        return sorted(range(len(self.files)), key=lambda i: (-float(self.scores[i]), self.files[i]))


# -- conventions -----------------------------------------------------------------------------

def pass_orders(k: int, shuffles: int, seed: int) -> list[np.ndarray]:
    """Pass 0: 0..K−1; pass p ≥ 1: RandomState(seed + p).permutation(K)."""
    return [np.arange(k)] + [np.random.RandomState(seed + p).permutation(k) for p in range(1, shuffles)]


def minibatch_slots(order: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A pass's list cut into minibatches of `size`, the last one wrapped around to the start:
    slot j of minibatch g holds order[(size·g + j) mod K]; returns (image indices [G, size],
    pad flags [G, size], True where the slot wrapped and its logit is not counted)."""
    k = len(order)
    positions = np.arange(math.ceil(k / size) * size).reshape(-1, size)
    return order[positions % k], positions >= k


def score_passes(scorer, k: int, load, labels: np.ndarray | None, options: RankOptions, bar=None) -> np.ndarray:
    """[passes, K] counted logits; `load(indices)` gives the uint8 images for image indices."""
    batches = [minibatch_slots(order, options.minibatch) for order in pass_orders(k, options.shuffles, options.seed)]
    slots = np.concatenate([idx for idx, _ in batches])  # every minibatch of every pass, in order
    pads = np.concatenate([pad for _, pad in batches])
    passes = np.concatenate([np.full(len(idx), p) for p, (idx, _) in enumerate(batches)])
    logits = np.full((options.shuffles, k), np.nan, np.float32)
    per_call = max(1, min(CALL_MINIBATCHES, CALL_PIXELS // (options.minibatch * scorer.d.resolution ** 2)))
    for start in range(0, len(slots), per_call):
        idx = slots[start:start + per_call]
        flat = idx.reshape(-1)
        out = scorer.minibatches(load(flat), None if labels is None else labels[flat], options.minibatch)
        out = out.reshape(idx.shape)
        for g in range(len(idx)):
            keep = ~pads[start + g]
            logits[passes[start + g], idx[g][keep]] = out[g][keep]
        if bar is not None:
            bar.update(int((~pads[start:start + per_call]).sum()))
    return logits


def mean_scores(logits: np.ndarray) -> np.ndarray:
    return np.mean(logits.astype(np.float32), axis=0, dtype=np.float32)


# -- the folder ------------------------------------------------------------------------------

def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise BakeryError(f"--in: {'not a folder' if folder.exists() else 'folder not found'}: {folder}")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                    and not p.name.startswith(".")), key=lambda p: p.name)
    if not files:
        raise BakeryError(f"--in: {folder}: no images (png, jpg, webp, bmp) to rank")
    return files


class ImageSource:
    """The folder's images as uint8 RGB [R, R, 3], checked up front (readable, size), decoded
    on use and kept while they fit in CACHE_BYTES (every image is used once per pass)."""

    def __init__(self, files: list[Path], resolution: int, resize: bool):
        from PIL import Image

        self.files, self.resolution, self.resize = files, resolution, resize
        self.cache: dict[int, np.ndarray] = {}
        self.keep = len(files) * resolution * resolution * 3 <= CACHE_BYTES
        for path in files:
            try:
                with Image.open(path) as im:
                    size = im.size
            except (OSError, Image.DecompressionBombError) as exc:
                raise BakeryError(f"{path}: not a readable image ({exc})") from None
            if size != (resolution, resolution) and not resize:
                raise BakeryError(f"{path}: {size[0]}×{size[1]} pixels, the model takes {resolution}×{resolution} "
                                  "(resize the images first, or pass --resize for Pillow's Lanczos)")

    def image(self, i: int) -> np.ndarray:
        if i in self.cache:
            return self.cache[i]
        from PIL import Image

        path = self.files[i]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (self.resolution, self.resolution):
                    im = im.resize((self.resolution, self.resolution), Image.Resampling.LANCZOS)
                array = np.asarray(im, np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise BakeryError(f"{path}: cannot decode the image ({exc})") from None
        if self.keep:
            self.cache[i] = array
        return array

    def load(self, indices) -> np.ndarray:
        return np.stack([self.image(int(i)) for i in indices])


def class_rows(d, files: list[Path], folder: Path, class_index: int | None) -> np.ndarray | None:
    """One-hot labels [K, c_dim] (None for an unconditional model): --class, else dataset.json."""
    if d.c_dim == 0:
        if class_index is not None:
            raise BakeryError(f"--class {class_index}: this model is not class-conditional; remove --class")
        return None
    if class_index is not None:
        if not 0 <= class_index < d.c_dim:
            raise BakeryError(f"--class {class_index} is out of range: this model has classes 0-{d.c_dim - 1}")
        rows = np.zeros((len(files), d.c_dim), np.float32)
        rows[:, class_index] = 1.0
        return rows
    labels = read_dataset_labels(folder / LABELS_FILE, d.c_dim)
    rows = np.zeros((len(files), d.c_dim), np.float32)
    for i, path in enumerate(files):
        if path.name not in labels:
            raise BakeryError(f"{folder / LABELS_FILE}: no label for {path.name} (this model is class-conditional "
                              f"with {d.c_dim} classes; or pass --class N for every image)")
        rows[i] = labels[path.name]
    return rows


def read_dataset_labels(path: Path, c_dim: int) -> dict[str, np.ndarray]:
    """NVIDIA's dataset.json → file name → label row: an integer class becomes one-hot (as
    their training loop builds it), a list of c_dim numbers is used as it is."""
    if not path.is_file():
        raise BakeryError(f"this model is class-conditional ({c_dim} classes): pass --class N, or put NVIDIA's "
                          f"{LABELS_FILE} ({{\"labels\": [[\"file.png\", 3], ...]}}) in the folder")
    try:
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise ValueError(f"larger than {MAX_LABELS_BYTES >> 20} MiB")
        entries = json.loads(path.read_text(encoding="utf-8"))["labels"]
        if not isinstance(entries, list):
            raise ValueError("'labels' is not a list")
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BakeryError(f"{path}: not NVIDIA's dataset format ({{\"labels\": [[\"file.png\", 3], ...]}}): "
                          f"{exc}") from None
    out = {}
    for n, entry in enumerate(entries):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise BakeryError(f"{path}: labels[{n}] is not a [\"file.png\", label] pair")
        name, label = Path(entry[0]).name, entry[1]
        row = np.zeros(c_dim, np.float32)
        if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < c_dim:
            row[label] = 1.0
        elif isinstance(label, list) and len(label) == c_dim and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in label):
            row[:] = label
        else:
            raise BakeryError(f"{path}: labels[{n}] ({entry[0]}): {str(label)[:40]!r} is not a class 0-{c_dim - 1} "
                              f"(or a list of {c_dim} numbers)")
        out[name] = row
    return out


# -- outputs ---------------------------------------------------------------------------------

def number(x: float) -> str:
    return f"{float(x):.9g}"


def csv_text(ranking: Ranking) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "score"] + [f"pass{p}" for p in range(len(ranking.logits))])
    for i in ranking.order():
        writer.writerow([ranking.files[i], number(ranking.scores[i])] + [number(v) for v in ranking.logits[:, i]])
    return buf.getvalue()


def write_csv(path: Path, ranking: Ranking) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(csv_text(ranking))


def contact_sheet(images: list[np.ndarray], captions: list[str], rows: list[str], cell: int) -> bytes:
    """Rows of `cell`-pixel images, each with its caption below and the row's title on the left."""
    from PIL import Image, ImageDraw, ImageFont

    per_row = max(1, math.ceil(len(images) / len(rows)))
    line, title_w = max(14, cell // 9), max(64, cell // 2)
    text_h = line * max(c.count("\n") + 1 for c in captions) + line // 2
    font = ImageFont.load_default(size=int(line * 0.8))
    sheet = Image.new("RGB", (title_w + per_row * cell, len(rows) * (cell + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, title in enumerate(rows):
        y = r * (cell + text_h)
        draw.text((title_w / 2, y + cell / 2), title, fill="black", font=font, anchor="mm")
        for c in range(per_row):
            n = r * per_row + c
            if n >= len(images):
                break
            tile = Image.fromarray(images[n]).resize((cell, cell), Image.Resampling.LANCZOS)
            sheet.paste(tile, (title_w + c * cell, y))
            draw.multiline_text((title_w + c * cell + cell / 2, y + cell + line // 4), captions[n], fill="black",
                                font=font, anchor="ma", align="center", spacing=2)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def short(name: str, limit: int = 18) -> str:
    """A file name that fits under a 128 px cell: the middle elided."""
    return name if len(name) <= limit else f"{name[:limit // 2 - 2]}...{name[-(limit // 2 - 1):]}"


def write_sheet(path: Path, ranking: Ranking, source: ImageSource, count: int) -> None:
    """The worst `count` (lowest first) and the best `count` (highest first), with their scores."""
    from PIL import Image

    order = ranking.order()
    count = min(count, len(order))
    worst, best = order[::-1][:count], order[:count]
    picks = worst + best
    cell = min(256, max(128, source.resolution))  # small models drawn legibly
    png = contact_sheet([source.image(i) for i in picks],
                        [f"{short(ranking.files[i])}\n{ranking.scores[i]:+.4f}" for i in picks],
                        [f"worst {count}", f"best {count}"], cell)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        buf = io.BytesIO()
        Image.open(io.BytesIO(png)).save(buf, format="JPEG", quality=90)
        png = buf.getvalue()
    elif path.suffix.lower() != ".png":
        raise BakeryError(f"--sheet {path}: write a .png or .jpg")
    write_bytes_atomic(path, png)


# -- the command -----------------------------------------------------------------------------

def check_options(options: RankOptions) -> None:
    if not 1 <= options.shuffles <= 1000:
        raise BakeryError(f"--shuffles must be between 1 and 1000 (passes in all), got {options.shuffles}")
    if not 1 <= options.minibatch <= 64:
        raise BakeryError(f"--minibatch must be between 1 and 64, got {options.minibatch}")
    if not 0 <= options.seed < 2 ** 32 - 1000:
        raise BakeryError(f"--seed must be between 0 and {2 ** 32 - 1001}, got {options.seed}")


def check_minibatch(d, size: int) -> None:
    group = d.group_size(size)
    if size % group:
        raise BakeryError(f"--minibatch {size}: the model's minibatch-stddev layer takes groups of "
                          f"{d.mbstd_group_size}, so a minibatch must be a multiple of it (or smaller)")


def rank_folder(model: Path, folder: Path, options: RankOptions, quiet: bool = True):
    """Score every image of `folder` with `model`'s discriminator → (Ranking, ImageSource, loaded D)."""
    from bakery.images.d_checkpoints import load_discriminator
    from bakery.images.discriminator import DScorer
    from bakery.progress import progress

    check_options(options)
    files = list_images(folder)
    loaded = load_discriminator(model)
    d = loaded.discriminator
    if d.channels != 3:
        raise BakeryError(f"{model}: the discriminator takes {d.channels}-channel images; only RGB models are supported")
    check_minibatch(d, options.minibatch)
    labels = class_rows(d, files, folder, options.class_index)
    source = ImageSource(files, d.resolution, options.resize)
    if options.resize:
        log.info("rank: images resized to %d×%d with Pillow's Lanczos", d.resolution, d.resolution)
    total = len(files) * options.shuffles
    with progress(None, desc="rank", total=total, unit="img", quiet=quiet) as bar:
        logits = score_passes(DScorer(d), len(files), source.load, labels, options, bar)
    ranking = Ranking([p.name for p in files], logits, mean_scores(logits))
    return ranking, source, loaded


def run_rank(args) -> None:
    from bakery.images.quick import model_file
    from bakery.preflight import ensure_writable

    folder = Path(args.input).expanduser()
    out = Path(args.out).expanduser() if args.out is not None else folder / "ranks.csv"
    ensure_writable(out.parent, "folder for ranks.csv")
    if args.sheet is not None:
        ensure_writable(Path(args.sheet).expanduser().parent, "folder for the contact sheet")
        if Path(args.sheet).suffix.lower() not in (".png", ".jpg", ".jpeg"):
            raise BakeryError(f"--sheet {args.sheet}: write a .png or .jpg")
    if args.sheet_count < 1:
        raise BakeryError(f"--sheet-count must be at least 1, got {args.sheet_count}")
    options = RankOptions(shuffles=args.shuffles, seed=args.seed, minibatch=args.minibatch,
                          class_index=args.class_index, resize=args.resize)
    ranking, source, loaded = rank_folder(model_file(args.model), folder, options, quiet=args.quiet)
    write_csv(out, ranking)
    if args.sheet is not None:
        write_sheet(Path(args.sheet).expanduser(), ranking, source, args.sheet_count)
    print_summary(ranking, args.show, loaded.description, out)


def print_summary(ranking: Ranking, show: int, description: str, out: Path) -> None:
    order = ranking.order()
    k = min(show, len(order))
    print(f"ranked {len(order)} images with the {description}; higher = more real to D")
    print(f"lowest {k}:")
    for i in order[::-1][:k]:
        print(f"  {number(ranking.scores[i]):>14}  {ranking.files[i]}")
    print(f"highest {k}:")
    for i in order[:k]:
        print(f"  {number(ranking.scores[i]):>14}  {ranking.files[i]}")
    print(f"wrote {out}")
