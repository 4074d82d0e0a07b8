"""`--shard I/N`: shard I of N bakes every N-th batch of the plan into its own folder.

A shard's batches are cut from the *whole* configured ID list (the batches a fresh local bake
forms), not from what is left to do, so a shard rerun on a half-finished folder keeps the same
IDs: the partition never depends on progress. Shard I writes into `<build_dir>-shard-I-of-N/`
(its own build/ and public/, and its own project lock, so N array-job tasks can share a
filesystem), plus shard.json: the shard's number and what its bytes depend on, which
`bakery merge` compares across shards (bakery/scale/merge.py).

Image stages own IDs by the generate batches (upscale and compress in a shard work on the IDs
that shard rendered); the text stage shards its own (first-attempt) batches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from bakery.errors import BakeryError

SHARD_FILE = "shard.json"
SHARD_VERSION = 1
# More shards than any array job runs; a bound, so shard.json cannot ask merge to count to 10**12.
MAX_SHARDS = 10_000
STAGE_NAMES = ("generate", "upscale", "compress", "text")
# The sections whose values shape the bytes a bake writes ([site] and [deploy] do not).
SHAPING_SECTIONS = ("images", "upscale", "jpeg", "text")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, batch_number: int) -> bool:
        return batch_number % self.count == self.index


def parse_shard(text: str) -> Shard:
    """ "I/N" with 0 <= I < N (argparse `type=`)."""
    import argparse

    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise argparse.ArgumentTypeError(f"must look like I/N (shard I of N, counting from 0), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise argparse.ArgumentTypeError(f"needs at least one shard (N >= 1), got {text!r}")
    if index >= count:
        raise argparse.ArgumentTypeError(f"needs 0 <= I < N (shards count from 0), got {text!r}: "
                                         f"{shard_names(count)}")
    if count > MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SHARDS} shards, got {text!r}")
    return Shard(index, count)


def shard_names(count: int) -> str:
    """"the shards of 2 are 0/2 and 1/2", "... 0/100 to 99/100", "the one shard of 1 is 0/1"."""
    if count == 1:
        return "the one shard of 1 is 0/1"
    if count > 4:
        return f"the shards of {count} are 0/{count} to {count - 1}/{count}"
    names = [f"{i}/{count}" for i in range(count)]
    return f"the shards of {count} are {', '.join(names[:-1])} and {names[-1]}"


def chunks(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def plan_batches(all_ids: list[int], todo: list[int], size: int, shard: Shard | None) -> list[list[int]]:
    """The batches a run renders: `todo` in batches of `size`; for a shard, the whole list's
    batches that the shard owns, each cut down to its IDs still to do."""
    if shard is None:
        return chunks(todo, size)
    left = set(todo)
    owned = (batch for number, batch in enumerate(chunks(all_ids, size)) if shard.owns(number))
    return [kept for kept in ([i for i in batch if i in left] for batch in owned) if kept]


def owned_ids(all_ids: list[int], size: int, shard: Shard | None) -> list[int]:
    """The IDs whose batches `shard` owns (every ID without a shard)."""
    return [i for batch in plan_batches(all_ids, all_ids, size, shard) for i in batch]


def image_ids(config, args) -> list[int]:
    """The image IDs upscale and compress work on: a shard's are those its generate renders."""
    from bakery.images.stage import batch_size_of

    ids = list(config.images.ids)
    shard = getattr(args, "shard", None)
    if shard is None:
        return ids
    return owned_ids(ids, batch_size_of(config.images, args), shard)


def shard_root(build_dir: Path, shard: Shard) -> Path:
    return build_dir.parent / f"{build_dir.name}-shard-{shard.index}-of-{shard.count}"


def shard_config(config, shard: Shard):
    """The same config with build/ and public/ moved into the shard's own folder."""
    root = shard_root(config.build_dir, shard)
    site = dataclasses.replace(config.site, build_dir=root / "build", public_dir=root / "public")
    redirected = dataclasses.replace(config, _parsed={**config._parsed})
    redirected._parsed["site"] = site
    return redirected


def config_hash(config) -> str:
    """sha256 of the output-shaping sections as written in site.toml (relative paths stay
    relative, so a project copied to another machine hashes the same)."""
    tables = {name: config.tables[name].data for name in SHAPING_SECTIONS if name in config.tables}
    text = json.dumps(tables, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seed_plan(config) -> list:
    """Every band as [first, last, psi, noise, class]: what each ID is rendered from."""
    return [[b.first, b.last, b.psi, b.noise, b.class_index] for b in config.images.bands]


def fingerprint(config, args) -> dict:
    """What every shard of one bake must share, else their outputs do not belong together."""
    from bakery.images.pickle_loader import sha256_of
    from bakery.images.stage import batch_size_of, resolve_model

    images = config.images
    text_batch = getattr(args, "text_batch_size", None)
    return {"model_sha256": sha256_of(resolve_model(images)) if images.enabled else None,
            "config_sha256": config_hash(config), "seed_plan": seed_plan(config),
            "batch_size": batch_size_of(images, args), "text_batch_size": text_batch}


def write_shard_manifest(config, args, stages: list[str]) -> None:
    """build-shard-I-of-N/shard.json, written before the shard's first stage starts."""
    from bakery.fsutil import write_json_atomic

    shard = args.shard
    root = shard_root_of(config)
    data = {"version": SHARD_VERSION, "shard": [shard.index, shard.count], "stages": stages,
            **fingerprint(config, args)}
    write_json_atomic(root / SHARD_FILE, data)


def shard_root_of(shard_configured) -> Path:
    """The shard's folder, from a config already redirected by shard_config."""
    return shard_configured.build_dir.parent


def read_shard_manifest(folder: Path) -> dict:
    """shard.json, validated key by key like a config table: what another machine wrote is
    input, and one wrong value must be one line naming the file and key, not a traceback or
    a count to 10**12."""
    path = folder / SHARD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BakeryError(f"{folder}: not a shard folder (no {SHARD_FILE}; shards are the "
                          "build-shard-I-of-N folders that `bakery bake --shard I/N` writes)") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise BakeryError(f"{path}: unreadable shard manifest ({str(exc)[:200]})") from None
    if not isinstance(data, dict) or data.get("version") != SHARD_VERSION:
        raise BakeryError(f"{path}: not a version-{SHARD_VERSION} shard manifest")
    return validated_manifest(data, path)


def validated_manifest(data: dict, path: Path) -> dict:
    from bakery.images.config import MAX_BATCH
    from bakery.tables import Table

    t = Table(data, "", path, path.parent)
    t.int("version", min=SHARD_VERSION, max=SHARD_VERSION)
    index, count = shard_pair(t)
    stages = t.str_list("stages")
    for stage in stages:
        if stage not in STAGE_NAMES:
            raise t.error("stages", f"unknown stage {stage!r:.60} (the stages are {', '.join(STAGE_NAMES)})")
    model = t.str("model_sha256", None)
    if model is not None and not re.fullmatch(r"[0-9a-f]{64}", model):
        raise t.error("model_sha256", f"must be a sha256 in hex (64 digits), got {model!r:.80}")
    if not re.fullmatch(r"[0-9a-f]{64}", t.str("config_sha256")):
        raise t.error("config_sha256", "must be a sha256 in hex (64 digits)")
    if not isinstance(t.raw("seed_plan"), list):
        raise t.error("seed_plan", "must be a list of bands")
    t.int("batch_size", min=1, max=MAX_BATCH)
    t.int("text_batch_size", None, min=1)  # --text-batch-size has no upper bound
    t.finish()
    return {**data, "shard": [index, count]}


def shard_pair(t) -> tuple[int, int]:
    """"shard": [I, N] with 0 <= I < N <= MAX_SHARDS."""
    pair = t.raw("shard")
    if not (isinstance(pair, list) and len(pair) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
        raise t.error("shard", f"must be [I, N], two integers (shard I of N), got {pair!r:.80}")
    index, count = pair
    if not 1 <= count <= MAX_SHARDS:
        raise t.error("shard", f"shard count {count} is out of range (must be 1 to {MAX_SHARDS})")
    if not 0 <= index < count:
        raise t.error("shard", f"shard index {index} is out of range (must be 0 to {count - 1} of {count})")
    return index, count
