"""`bakery merge DIR...`: the shards of one bake (bakery/scale/shard.py) into the project's
build/ and public/, with the manifests a single-machine bake writes.

Refused, before anything is written: a folder that is not a shard, shards of different
counts, a shard missing or given twice, and shards (or a project) whose model sha256, config
or seed plan differ. Every shard output must still verify against its shard's records; the
merged copies are written atomically, in stage order (raw PNG, upscaled PNG, JPEG), so the
freshness checks of a later run see them as done. The text stage replays the shards'
first-attempt outcomes in the order a local bake meets them, through the same duplicate
check and resampling (bakery/text/stage.py write_rounds); only a rejected snippet needs the
model here.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from bakery.errors import BakeryError
from bakery.fsutil import write_bytes_atomic, write_json_atomic
from bakery.scale.shard import Shard, fingerprint, owned_ids, read_shard_manifest
from bakery.verify import stage_records, verifies

log = logging.getLogger("bakery.merge")

COMPARED = {"model_sha256": "model (sha256)", "config_sha256": "config ([images], [upscale], [jpeg], [text])",
            "seed_plan": "seed plan ([[images.bands]])", "batch_size": "images batch size",
            "text_batch_size": "text batch size", "stages": "stages"}


def check_shards(config, args, folders: list[Path]) -> tuple[list[dict], int]:
    """The shard manifests in shard order, after every consistency check."""
    manifests = [(folder, read_shard_manifest(folder)) for folder in folders]
    first_folder, first = manifests[0]
    count = first["shard"][1]
    for folder, data in manifests:
        if data["shard"][1] != count:
            raise BakeryError(f"{folder}: shard {data['shard'][0]}/{data['shard'][1]} belongs to a bake in "
                              f"{data['shard'][1]} shards, {first_folder} to one in {count}")
        for key, what in COMPARED.items():
            if data.get(key) != first.get(key):
                raise BakeryError(f"{folder}: baked with another {what} than {first_folder}: refusing to merge "
                                  "shards of different bakes (rerun that shard with the same model and config)")
    here = fingerprint(config, args)
    for key in ("model_sha256", "config_sha256", "seed_plan"):
        if here[key] != first.get(key):
            raise BakeryError(f"{first_folder}: the shards were baked with another {COMPARED[key]} than "
                              f"{config.source} has now: refusing to merge")
    by_index: dict[int, tuple[Path, dict]] = {}
    for folder, data in manifests:
        index = data["shard"][0]
        if index in by_index:
            raise BakeryError(f"{folder}: shard {index}/{count} is given twice (also {by_index[index][0]})")
        by_index[index] = (folder, data)
    missing = [f"{i}/{count}" for i in range(count) if i not in by_index]
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise BakeryError(f"shard(s) {shown} missing: merge needs all {count} shards of the bake")
    return [{"folder": by_index[i][0], **by_index[i][1]} for i in range(count)], count


def shard_records(folder: Path, manifest: str, key: str) -> dict[str, dict]:
    path = folder / "build" / manifest
    return stage_records(path, key, path.parent / "journal.jsonl") or {}


def verified(shard: dict, ids: list[int], output, records: dict, stage: str) -> None:
    for i in ids:
        if not verifies(output(i), records.get(str(i))):
            raise BakeryError(f"{shard['folder']}: {stage} ID {i} is missing or does not verify: "
                              f"rerun shard {shard['shard'][0]}/{shard['shard'][1]} to finish it")


def copy_into(src: Path, dst: Path) -> bytes:
    data = src.read_bytes()
    write_bytes_atomic(dst, data)
    return data


def merge_generate(config, shards: list[dict], owned: dict) -> None:
    from bakery.images.stage import MANIFEST_VERSION, load_manifest, resolve_model

    raw = config.build_dir / "raw"
    records = load_manifest(raw / "manifest.json")
    info = None
    for shard in shards:
        folder = shard["folder"]
        theirs = shard_records(folder, "raw/manifest.json", "images")
        verified(shard, owned[shard["shard"][0]], lambda i: folder / "build/raw" / f"example-{i}.png", theirs,
                 "generate")
        for i in owned[shard["shard"][0]]:
            copy_into(folder / "build/raw" / f"example-{i}.png", raw / f"example-{i}.png")
            records[str(i)] = theirs[str(i)]
        try:
            info = info or json.loads((folder / "build/raw/manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    if info is None:
        raise BakeryError(f"{shards[0]['folder']}: no build/raw/manifest.json: rerun the shards to finish")
    model_path = resolve_model(config.images)
    write_json_atomic(raw / "manifest.json", {
        "version": MANIFEST_VERSION, "model": str(config.images.model), "model_path": str(model_path),
        "model_sha256": info["model_sha256"], "generator": info["generator"], "resolution": info["resolution"],
        "images": records})
    (raw / "journal.jsonl").unlink(missing_ok=True)


def merge_images(config, shards: list[dict], owned: dict, stage: str) -> None:
    """upscale (build/upscaled) or compress (public/ JPEGs): copied and recorded as that stage's
    Manifest does, with `source` taken from the merged input (its freshness check)."""
    from bakery.upscale.stage import Job, Manifest, source_signature

    if stage == "upscale":
        manifest_name, settings = "upscaled/manifest.json", config.upscale.settings()
        src_of = lambda i: config.build_dir / "upscaled" / f"example-{i}.png"  # noqa: E731
        input_of = lambda i: config.build_dir / "raw" / f"example-{i}.png"  # noqa: E731
        shard_out = lambda folder, i: folder / "build/upscaled" / f"example-{i}.png"  # noqa: E731
    else:
        manifest_name, settings = "compress/manifest.json", config.jpeg.settings()
        src_of = lambda i: config.public_dir / f"example-{i}.jpg"  # noqa: E731
        input_of = lambda i: config.build_dir / "upscaled" / f"example-{i}.png"  # noqa: E731
        shard_out = lambda folder, i: folder / "public" / f"example-{i}.jpg"  # noqa: E731
    manifest = Manifest(config.build_dir / manifest_name, settings, stage)
    try:
        for shard in shards:
            folder = shard["folder"]
            theirs = shard_records(folder, manifest_name, "done")
            ids = owned[shard["shard"][0]]
            verified(shard, ids, lambda i: shard_out(folder, i), theirs, stage)
            for i in ids:
                copy_into(shard_out(folder, i), src_of(i))
                manifest.record(Job(i, input_of(i), src_of(i), source_signature(input_of(i))), 0)
    finally:
        manifest.close()


def merge_text(config, args, shards: list[dict]) -> None:
    from bakery.text.clean import Cleaned
    from bakery.text.pipelines import Outcome
    from bakery.text.stage import plan_text, text_shaping, write_rounds

    plan = plan_text(config, args)
    outcomes: dict[int, Outcome] = {}
    settings = None
    for shard in shards:
        folder = shard["folder"]
        path = folder / "build/text/manifest.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise BakeryError(f"{path}: missing or unreadable: rerun shard {shard['shard'][0]}/{shard['shard'][1]}")
        # compared as a rerun compares them: shards baked in venvs at different paths agree
        if settings is not None and text_shaping(data.get("settings")) != text_shaping(settings):
            raise BakeryError(f"{folder}: its text settings differ from {shards[0]['folder']}'s: refusing to merge")
        settings = data.get("settings")
        records = shard_records(folder, "text/manifest.json", "snippets")
        for key, reasons in (data.get("failed") or {}).items():
            outcomes[int(key)] = Outcome(int(key), Cleaned(None, reasons[-1]), ())
        for key, record in records.items():
            snippet = folder / "build/text" / f"snippet-{key}.txt"
            if key.isdigit() and verifies(snippet, record):
                text = snippet.read_text(encoding="utf-8")[:-1]  # the stage adds one "\n"
                outcomes[int(key)] = Outcome(int(key), Cleaned(text), tuple(record.get("seeds", ())))
    unfinished = [i for i in plan.todo if i not in outcomes]
    if unfinished:
        raise BakeryError(f"text: the shards hold no first attempt for ID {unfinished[0]} "
                          f"({len(unfinished)} in all): rerun the shards to finish them")
    if not plan.todo:
        return
    local = {}

    def rounds(batches, attempt):
        if attempt == 0:  # what the shards computed, in the order a local bake meets it
            return ([outcomes[i] for i in batch] for batch in batches)
        if "rounds" not in local:  # a rejected snippet: resampled here, as a local bake does
            from bakery.text.stage import build_backends, local_rounds, make_pipeline_of

            log.info("text: resampling the snippets the shards' first attempts left")
            backends = build_backends(plan.cfg, quiet=True)
            local["rounds"] = local_rounds(make_pipeline_of(plan.cfg, backends))
        return local["rounds"](batches, attempt)

    write_rounds(config, args, plan, settings, rounds, lambda: 0, time.monotonic())


def run_merge(config, args) -> None:
    from bakery.images.stage import batch_size_of

    folders = [Path(f) for f in args.shards]
    shards, count = check_shards(config, args, folders)
    stages = shards[0]["stages"]
    args.batch_size = shards[0]["batch_size"]  # the shards' --batch-size and --text-batch-size
    args.text_batch_size = shards[0]["text_batch_size"]
    ids = list(config.images.ids)
    size = batch_size_of(config.images, args)
    owned = {i: owned_ids(ids, size, Shard(i, count)) for i in range(count)}
    for stage in ("generate", "upscale", "compress"):
        if stage in stages:
            log.info("merge: %s from %d shard(s)", stage, count)
            merge_generate(config, shards, owned) if stage == "generate" else merge_images(config, shards, owned, stage)
    if "text" in stages:
        log.info("merge: text from %d shard(s)", count)
        merge_text(config, args, shards)
    log.info("merge: %d shard(s) merged into %s and %s", count, config.build_dir, config.public_dir)
