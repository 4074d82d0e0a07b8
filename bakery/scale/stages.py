"""Each stage's Ray side: what a worker loads and computes (a *spec*, pickled to the actors),
and the driver loop that writes the results with the stage's own writes and records.

A spec's `load(folder, shipped)` runs once per actor; `compute(state, batch)` once per batch.
The batches are the stage's own (plan_generate, chunks of the text plan, the upscale and
compress jobs), so a Ray bake computes exactly what a local bake computes.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
from dataclasses import dataclass
from pathlib import Path

from bakery.errors import BakeryError
from bakery.progress import progress
from bakery.scale.executor import accept_ids, pack, short, unpack

log = logging.getLogger("bakery.ray")


def threads_for(num_cpus: float) -> int:
    return max(1, int(num_cpus))


def pin_threads(num_cpus: float, tensorflow: bool = False) -> None:
    """torch and TensorFlow use every core of a machine by default; an actor gets its
    num_cpus share, so N actors on one machine do not oversubscribe it. TensorFlow's pools
    can be sized only before its first op, so this runs before the model loads."""
    import torch

    threads = threads_for(num_cpus)
    torch.set_num_threads(threads)
    if tensorflow:
        from bakery.images.tfsetup import import_tf

        tf = import_tf()  # sizes the pools to the whole machine; resized here before any op
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            log.warning("ray: TensorFlow was already running; its thread pools keep their size")


# --- generate -------------------------------------------------------------------------------


@dataclass
class GenerateSpec:
    stage = "generate"
    model_name: str
    sha256: str
    bands: tuple
    truncation_cutoff: int | None
    num_cpus: float

    def load(self, folder: Path, shipped: dict):
        from bakery.images.stage import GenerateWorker

        pin_threads(self.num_cpus, tensorflow=True)
        path = unpack(shipped["model"], folder / "model", was_file=True)
        return GenerateWorker(path, self.sha256, self.bands, self.truncation_cutoff)

    def compute(self, worker, batch):
        ids, wanted = batch
        gen = worker.model.generator
        return worker.render_pngs(ids, wanted), {"kind": gen.kind, "resolution": gen.resolution}


def generate_remote(remote, config, args, plan) -> None:
    from bakery.images.stage import open_records, write_pngs

    cfg = config.images
    spec = GenerateSpec(plan.model_path.name, plan.sha256, cfg.bands, cfg.truncation_cutoff, remote.cfg.num_cpus)
    results = remote.map(spec, plan.batches, payload=lambda ids: (ids, {i: plan.wanted[i] for i in ids}),
                         shipped={"model": pack(plan.model_path)})
    bar = progress(None, desc="images", total=len(plan.todo), unit="img", quiet=args.quiet)
    save_manifest = journal = None
    try:
        for number, (ids, (pngs, generator)) in enumerate(zip(plan.batches, results)):
            accept_pngs(number, ids, pngs)
            if save_manifest is None:  # the manifest names the generator a worker loaded
                save_manifest, written, journal = open_records(plan, cfg, accept_generator(number, generator))
            bar.update(len(write_pngs(plan.raw_dir, pngs, written)))
    finally:
        bar.close()
        results.close()
        if save_manifest is not None:
            save_manifest()
            journal.remove()
    log.info("images: rendered %d image(s) into %s on Ray", len(plan.todo), plan.raw_dir)


def accept_pngs(number: int, ids: list[int], pngs) -> None:
    """A generate batch's result: (ID, PNG bytes) for exactly the IDs sent, in order."""
    pairs = list(pngs) if isinstance(pngs, list) else None
    if pairs is None or not all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
        raise BakeryError(f"generate: Ray batch {number} returned {short(type(pngs).__name__)}, "
                          "not a list of (ID, PNG bytes) pairs: refused")
    accept_ids("generate", number, ids, [i for i, _ in pairs])
    if not all(isinstance(data, bytes) for _, data in pairs):
        raise BakeryError(f"generate: Ray batch {number} returned an image that is not PNG bytes: refused")


def accept_generator(number: int, generator) -> dict:
    """What the manifest records about the worker's generator: a short name and a resolution."""
    resolution = generator.get("resolution") if isinstance(generator, dict) else None
    if not (isinstance(generator.get("kind") if isinstance(generator, dict) else None, str)
            and len(generator["kind"]) <= 64 and isinstance(resolution, numbers.Integral)
            and not isinstance(resolution, bool) and 0 < resolution <= 1 << 16):
        raise BakeryError(f"generate: Ray batch {number} described its generator as {short(generator)}: refused")
    return {"kind": generator["kind"], "resolution": int(resolution)}


# --- upscale and compress -------------------------------------------------------------------


@dataclass
class UpscaleSpec:
    stage = "upscale"
    settings: tuple  # Upscaler's arguments: (the [upscale] config, threads)
    num_cpus: float

    def load(self, folder: Path, shipped: dict):
        from bakery.upscale.stage import Upscaler

        cfg = self.settings[0]
        pin_threads(self.num_cpus, tensorflow=cfg.method == "waifu2x" and cfg.engine == "tensorflow")
        return Upscaler(*self.settings)

    def compute(self, upscaler, sources):
        return upscaler.compute(sources)


@dataclass
class CompressSpec:
    stage = "compress"
    jpeg: object

    def load(self, folder: Path, shipped: dict):
        return None

    def compute(self, _, sources):
        from bakery.upscale.stage import compress_bytes

        return [compress_bytes(i, name, data, self.jpeg) for i, name, data in sources]


def sources_of(jobs) -> list:
    """A batch as it travels: (ID, source path for messages, the source's bytes)."""
    from bakery.errors import BakeryError
    from bakery.upscale.stage import read_source

    out = []
    for job in jobs:
        try:
            out.append((job.id, str(job.src), read_source(job.src)))
        except BakeryError:
            out.append((job.id, str(job.src), None))  # reported as missing by the worker
    return out


def accept_outputs(stage: str, number: int, jobs, results) -> None:
    """An upscale or compress batch's result: (ID, bytes or None, error text) per job, in order."""
    if not (isinstance(results, list) and all(isinstance(r, tuple) and len(r) == 3 for r in results)):
        raise BakeryError(f"{stage}: Ray batch {number} returned {short(type(results).__name__)}, "
                          "not a list of (ID, bytes, error) triples: refused")
    accept_ids(stage, number, [job.id for job in jobs], [r[0] for r in results])
    for image_id, data, error in results:
        if not (isinstance(data, bytes) if not error else isinstance(error, str)):
            raise BakeryError(f"{stage}: Ray batch {number} returned neither bytes nor an error for "
                              f"ID {image_id}: refused")


def write_outputs(stage: str, jobs, results, manifest, failures: dict, bar) -> None:
    """Write each returned output atomically and record it, as the local stage does."""
    from bakery.fsutil import write_bytes_atomic

    by_id = {job.id: job for job in jobs}
    for image_id, data, error in results:  # accepted: the batch's IDs, in order (accept_outputs)
        if error:
            failures[image_id] = error
            log.error("%s: ID %d: %s", stage, image_id, error)
        else:
            write_bytes_atomic(by_id[image_id].dst, data)
            manifest.record(by_id[image_id], len(data))
        bar.update(1)


def upscale_remote(remote, cfg, todo, manifest, failures: dict, quiet: bool) -> None:
    from bakery.upscale.stage import upscale_plan

    # Batches as a local run on a GPU forms them (upscale.batch_size), one image each on CPUs.
    per_call = upscale_plan(cfg, bool(remote.gpus), len(todo))[2]
    threads = threads_for(remote.cfg.num_cpus)
    spec = UpscaleSpec((cfg, threads), remote.cfg.num_cpus)
    batches = [todo[i:i + per_call] for i in range(0, len(todo), per_call)]
    bar = progress(None, desc="upscale", total=len(todo), unit="img", quiet=quiet)
    try:
        for number, (jobs, results) in enumerate(zip(batches, remote.map(spec, batches, payload=sources_of))):
            accept_outputs("upscale", number, jobs, results)
            write_outputs("upscale", jobs, results, manifest, failures, bar)
    finally:
        bar.close()


COMPRESS_BATCH = 8  # JPEGs per Ray call: one image a call would be all overhead


def compress_remote(remote, cfg, todo, manifest, failures: dict, bar) -> None:
    batches = [todo[i:i + COMPRESS_BATCH] for i in range(0, len(todo), COMPRESS_BATCH)]
    results = remote.map(CompressSpec(cfg), batches, payload=sources_of)
    for number, (jobs, outputs) in enumerate(zip(batches, results)):
        accept_outputs("compress", number, jobs, outputs)
        write_outputs("compress", jobs, outputs, manifest, failures, bar)


# --- text -----------------------------------------------------------------------------------


@dataclass
class TextSpec:
    stage = "text"
    cfg: object  # TextConfig
    num_cpus: float

    def load(self, folder: Path, shipped: dict):
        """The models and prompts arrive through the object store; the stages point at them."""
        from bakery.text.stage import build_backends, make_pipeline_of

        pin_threads(self.num_cpus)
        stages = []
        for n, stage in enumerate(self.cfg.stages):
            changes = {"prompt": unpack(shipped[f"prompt:{stage.prompt}"], folder / f"prompt{n}", was_file=True)}
            key = f"model:{stage.model}"
            if key in shipped:
                entries, was_file = shipped[key]
                changes["model"] = unpack(entries, folder / f"model{n}", was_file)
            stages.append(dataclasses.replace(stage, **changes))
        # torch's threads follow the actor's CPU share, not the driver's [text] threads
        cfg = dataclasses.replace(self.cfg, stages=tuple(stages), threads=threads_for(self.num_cpus))
        backends = build_backends(cfg, quiet=True)
        return backends, make_pipeline_of(cfg, backends)

    def compute(self, state, items):
        from bakery.text.stage import tokens_of

        backends, pipeline = state
        before = tokens_of(backends)
        return pipeline.run(items), tokens_of(backends) - before


def text_shipment(cfg) -> dict:
    from bakery.text.config import EMBEDDED_MODEL

    shipped = {}
    for stage in cfg.stages:
        shipped[f"prompt:{stage.prompt}"] = pack(stage.prompt)
        if stage.model != EMBEDDED_MODEL:  # the embedded model is a package every node installs
            shipped[f"model:{stage.model}"] = (pack(Path(stage.model)), Path(stage.model).is_file())
    return shipped


def text_remote(remote, cfg, args):
    """(backends for the manifest's identity, rounds(batches, attempt), tokens()) for Ray."""
    spec = TextSpec(cfg, remote.cfg.num_cpus)
    shipped = text_shipment(cfg)
    counted = [0]

    def rounds(batches, attempt):
        items = [[(i, attempt) for i in batch] for batch in batches]
        for number, (batch, (outcomes, tokens)) in enumerate(zip(batches, remote.map(spec, items, shipped=shipped))):
            counted[0] += tokens if type(tokens) is int else 0
            yield accept_outcomes(number, batch, outcomes)

    return identity_backends(cfg), rounds, lambda: counted[0]


def accept_outcomes(number: int, batch: list[int], outcomes) -> list:
    """A text batch's result: one Outcome per snippet ID sent, in order, holding text or a reason."""
    from bakery.text.clean import Cleaned
    from bakery.text.pipelines import Outcome

    if not (isinstance(outcomes, list) and all(type(o) is Outcome for o in outcomes)):
        raise BakeryError(f"text: Ray batch {number} returned {short(type(outcomes).__name__)}, "
                          "not a list of outcomes: refused")
    accept_ids("text", number, batch, [o.snippet_id for o in outcomes])
    for o in outcomes:
        cleaned = o.cleaned
        if not (type(cleaned) is Cleaned and (cleaned.text is None or isinstance(cleaned.text, str))
                and isinstance(cleaned.reason, str) and isinstance(o.seeds, (tuple, list))
                and all(type(s) is int for s in o.seeds)):
            raise BakeryError(f"text: Ray batch {number} returned a malformed outcome for ID {o.snippet_id}: refused")
    return outcomes


def identity_backends(cfg) -> dict:
    """The backends' identities (name, path, file sha256s, device) for the manifest, without
    loading any model on the driver."""
    from types import SimpleNamespace

    from bakery.text.backends.transformers_backend import TransformersBackend

    class Unloaded(TransformersBackend):
        def _load(self, quiet, cache_dir=None):
            return SimpleNamespace(pad_token_id=None), None

        def _stop_token_ids(self):
            return None

    loaded, backends = {}, {}
    for stage in cfg.stages:
        key = (str(stage.model), stage.device)
        if key not in loaded:
            loaded[key] = Unloaded(stage.model, stage.device, where=f"text.{stage.name}.model")
        backends[stage.name] = loaded[key]
    return backends


def text_shard(config, args, plan, current: dict, rounds) -> None:
    """A shard's text: the first attempt of its own batches, with neither the duplicate check
    nor resampling, which need every shard's snippets in order: `bakery merge` replays these
    outcomes in the order a local bake meets them and resamples what that rejects."""
    from bakery.fsutil import write_json_atomic, write_text_atomic
    from bakery.journal import JOURNAL_NAME, Journal
    from bakery.scale.shard import plan_batches
    from bakery.text.stage import JOURNAL_HEADER, MANIFEST_VERSION, snippet_path
    from bakery.verify import record_of

    batches = plan_batches(plan.ids, plan.todo, plan.chunk_size, args.shard)
    done = set(plan.ids) - set(plan.todo)
    previous_failed = plan.previous.get("failed") if isinstance(plan.previous.get("failed"), dict) else {}
    manifest = {"version": MANIFEST_VERSION, "settings": current, "failed": {},
                "snippets": {k: v for k, v in plan.recorded.items() if k.isdigit() and int(k) in done}}
    manifest["failed"] = {k: v for k, v in previous_failed.items() if k.isdigit() and int(k) not in done}
    write_json_atomic(plan.manifest_path, manifest)
    journal = Journal(plan.out_dir / JOURNAL_NAME, JOURNAL_HEADER, "text")
    total = sum(len(b) for b in batches)
    with progress(None, "text", total=total, unit="snippet", quiet=args.quiet) as bar:
        for outcomes in rounds(batches, 0):
            for outcome in outcomes:
                i = str(outcome.snippet_id)
                if outcome.ok:
                    text = outcome.cleaned.text + "\n"
                    write_text_atomic(snippet_path(config, outcome.snippet_id), text)
                    manifest["snippets"][i] = {"attempts": 1, "seeds": list(outcome.seeds),
                                               "chars": len(outcome.cleaned.text), "rejected": [],
                                               **record_of(text.encode("utf-8"))}
                    manifest["failed"].pop(i, None)
                    journal.add(i, manifest["snippets"][i])
                else:
                    manifest["failed"][i] = [outcome.cleaned.reason]
                bar.update(1)
            write_json_atomic(plan.manifest_path, manifest)
    journal.remove()
    log.info("text: shard %s wrote %d first-attempt snippet(s), %d rejected (resampled by `bakery merge`)",
             args.shard, total - len(manifest["failed"]), len(manifest["failed"]))
