"""The [images] section: which checkpoint, and which seeds render at which truncation (psi)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bakery.seeds import span
from bakery.tables import Table

NOISE_MODES = ("const", "seeded", "random", "none")
EMBEDDED_MODEL = "embedded"


# The renderer traces one graph per batch size with every image's convolutions unrolled
# (layers.per_image): tracing costs ~0.3 s per image of the batch, and beyond a few dozen
# images a batch gains nothing more.
MAX_BATCH = 64
# NVIDIA's seeds go through numpy's RandomState, which takes 0..2^32-1; a larger seed would
# fail mid-bake. And every ID is listed in memory and baked: far beyond the original's
# 100,000 is a typo, not a plan (4 billion IDs took ~19 GB before failing).
MAX_SEED = 2 ** 32 - 1
MAX_IDS = 10_000_000
# StyleGAN3's input transform (NVIDIA's gen_images.py --translate/--rotate): translate is in the
# input layer's coordinates (1 = half the central image's width); far outside a few units only
# shows the faded-out edge of the Fourier features, so a huge value is a typo.
MAX_TRANSLATE = 1000.0
MAX_ROTATE = 360.0


@dataclass(frozen=True)
class Band:
    """Seeds first..last (inclusive) rendered at one psi; each seed's image gets ID = seed."""

    first: int
    last: int
    psi: float
    noise: str
    class_index: int | None = None  # `class`: the label of a class-conditional model (NVIDIA's --class)
    translate: tuple[float, float] | None = None  # StyleGAN3 only: gen_images.py's --translate tx,ty
    rotate: float | None = None  # StyleGAN3 only: gen_images.py's --rotate, degrees

    @property
    def transformed(self) -> bool:
        """Does the band ask for a StyleGAN3 input transform (a non-zero translate or rotate)?"""
        return (self.translate is not None and any(self.translate)) or bool(self.rotate)

    @property
    def ids(self) -> range:
        return range(self.first, self.last + 1)

    def __len__(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class ImagesConfig:
    enabled: bool
    model: str | Path  # EMBEDDED_MODEL or a checkpoint path
    bands: tuple[Band, ...]
    batch_size: int
    truncation_cutoff: int | None

    @property
    def ids(self) -> list[int]:
        return [i for band in self.bands for i in band.ids]

    def band_of(self, image_id: int) -> Band | None:
        for band in self.bands:
            if band.first <= image_id <= band.last:
                return band
        return None


def parse_seed_range(t: Table, name: str) -> list[tuple[int, int]]:
    """A band's seeds: "A-B", or a comma list of ranges and single seeds ("0-9,20,30-35")."""
    from bakery.seeds import SeedListError, parse_seed_ranges

    try:
        return parse_seed_ranges(t.str(name, allow_empty=False))
    except SeedListError as exc:
        raise t.error(name, str(exc)) from None


def check_seed_bounds(t: Table, name: str, first: int, last: int) -> None:
    if last > MAX_SEED:
        raise t.error(name, f"seed {last} is above {MAX_SEED} (2^32-1), the largest seed NumPy's "
                            "RandomState takes")


def check_id_count(t: Table, bands: list[Band]) -> None:
    total = sum(len(b) for b in bands)
    if total > MAX_IDS:
        raise t.error("bands", f"{total:,} IDs in all: at most {MAX_IDS:,} are supported")


def parse_translate(t: Table, name: str = "translate") -> tuple[float, float] | None:
    """`translate = [tx, ty]`: two finite numbers (NVIDIA's gen_images.py --translate)."""
    value = t.raw(name, None)
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise t.error(name, f"must be two numbers [tx, ty] (as NVIDIA's gen_images.py --translate), got {value!r:.60}")
    if not all(math.isfinite(v) and abs(v) <= MAX_TRANSLATE for v in value):
        raise t.error(name, f"must be finite numbers within ±{MAX_TRANSLATE:g}, got {value!r:.60}")
    return float(value[0]), float(value[1])


def parse_band(t: Table, default_noise: str) -> list[Band]:
    """One [[images.bands]] table → one Band per range of its seed list (same psi, noise, class)."""
    ranges = parse_seed_range(t, "seeds")
    for first, last in ranges:
        check_seed_bounds(t, "seeds", first, last)
    psi, noise = t.float("psi", min=-2.0, max=2.0), t.str("noise", default_noise, choices=NOISE_MODES)
    class_index = t.int("class", None, min=0)
    translate = parse_translate(t)
    rotate = t.float("rotate", None, min=-MAX_ROTATE, max=MAX_ROTATE)
    t.finish()
    return [Band(first, last, psi, noise, class_index, translate, rotate) for first, last in ranges]


def check_contiguous(t: Table, bands: list[Band], table_of: list[int] | None = None) -> None:
    """Bands must tile one seed range: an overlap renders an ID twice, a gap leaves holes.
    table_of[i] is the [[images.bands]] index band i came from (a comma list gives several)."""
    table_of = table_of or list(range(len(bands)))
    order = sorted(range(len(bands)), key=lambda i: bands[i].first)
    for prev, cur in zip(order, order[1:]):
        a, b = bands[prev], bands[cur]
        where, other = f"bands[{table_of[cur]}]", f"bands[{table_of[prev]}]"
        if b.first <= a.last:
            raise t.error(where, f"{seeds(b.first, b.last)} {verb(b.first, b.last, 'overlap')} {other} "
                                 f"({span(a.first, a.last)})")
        if b.first > a.last + 1:
            raise t.error(where, f"{seeds(b.first, b.last)} {verb(b.first, b.last, 'leave')} a gap after {other} "
                                 f"({span(a.first, a.last)}): {seeds(a.last + 1, b.first - 1)} "
                                 f"{verb(a.last + 1, b.first - 1, 'belong')} to no band")


def seeds(first: int, last: int) -> str:
    """"seed 6" or "seeds 6-9"."""
    return f"seed {first}" if first == last else f"seeds {first}-{last}"


def verb(first: int, last: int, plural: str) -> str:
    """The verb agreeing with seeds(first, last): "belongs" for one seed, "belong" for several."""
    return f"{plural}s" if first == last else plural


def parse_images(t: Table) -> ImagesConfig:
    model_text = t.str("model", EMBEDDED_MODEL, allow_empty=False)
    model: str | Path = EMBEDDED_MODEL if model_text == EMBEDDED_MODEL else t.path_value("model", must_exist=True)
    noise = t.str("noise", "const", choices=NOISE_MODES)
    band_tables = t.tables("bands", [])
    per_table = [parse_band(b, noise) for b in band_tables]
    bands = [band for group in per_table for band in group]
    if not bands:
        raise t.error("bands", "at least one band ([[images.bands]] with seeds and psi) is required")
    check_contiguous(t, bands, [i for i, group in enumerate(per_table) for _ in group])
    check_id_count(t, bands)
    cfg = ImagesConfig(
        enabled=t.bool("enabled", True),
        model=model,
        bands=tuple(sorted(bands, key=lambda b: b.first)),
        batch_size=t.int("batch_size", 8, min=1, max=MAX_BATCH),
        truncation_cutoff=t.int("truncation_cutoff", None, min=1),
    )
    t.finish()
    return cfg
