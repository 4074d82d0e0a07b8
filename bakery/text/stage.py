"""`bakery text`: one cleaned snippet per ID → build/text/snippet-{ID}.txt, resumably.

- IDs are config.images.ids (ID == seed), so every face gets its snippet.
- A snippet file that exists with text in it and still has the sha256 recorded when it was
  written is done and skipped; a missing, empty, unreadable, truncated, altered or
  unrecorded one is (re)generated. Files are written atomically, so a killed run leaves
  only complete snippets (and at most a stray .tmp-* that the next run removes), and each
  is recorded in build/text/journal.jsonl the moment it is written (bakery/journal.py).
- A snippet that fails cleaning is resampled with the next sub-seed, up to
  text.max_attempts tries in all; those still failing are reported at the end
  (StageFailures, non-zero exit) while every other snippet is kept.
- build/text/manifest.json records the backend, model identity (name + file sha256),
  prompts, parameters and, per ID, the attempts it took. It is rewritten after every
  batch, so it is current even after a crash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path

from bakery.errors import BakeryError, StageFailures
from bakery.fsutil import remove_stale_temps, write_json_atomic, write_text_atomic
from bakery.journal import JOURNAL_NAME, Journal, replay
from bakery.progress import ItemProgress
from bakery.text.canonical import canonical
from bakery.text.config import StageConfig, TextConfig
from bakery.text.dedup import guard_duplicates
from bakery.verify import record_of, verifies

log = logging.getLogger("bakery.text")
MANIFEST_VERSION = 1
JOURNAL_HEADER = {"stage": "text", "version": MANIFEST_VERSION}


def text_dir(config) -> Path:
    return config.build_dir / "text"


def snippet_path(config, snippet_id: int) -> Path:
    return text_dir(config) / f"snippet-{snippet_id}.txt"


def is_done(path: Path, record: dict | None) -> bool:
    """A snippet counts as done when it is the file recorded at write time (size and sha256)
    and holds readable, non-blank UTF-8 text."""
    if not verifies(path, record):
        return False
    try:
        return bool(path.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return False


def read_snippets(config, ids) -> dict[int, str]:
    texts = {}
    for i in ids:
        try:
            texts[i] = snippet_path(config, i).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass
    return texts


def override_batch_size(cfg: TextConfig, batch_size: int | None) -> TextConfig:
    if batch_size is None:
        return cfg
    if batch_size < 1:
        raise BakeryError(f"--text-batch-size must be at least 1, got {batch_size}")
    stages = tuple(dataclasses.replace(s, batch_size=batch_size) for s in cfg.stages)
    return dataclasses.replace(cfg, stages=stages)


def read_api_key(cfg: TextConfig) -> str | None:
    """The one place the environment is read: the variable named by text.openai.api_key_env."""
    if cfg.openai is None or not cfg.openai.api_key_env:
        return None
    key = os.environ.get(cfg.openai.api_key_env, "")
    if not key:
        raise BakeryError(f"text.openai.api_key_env: the environment variable {cfg.openai.api_key_env} "
                          "is not set (export it, or set api_key_env = \"\" for a server without keys)")
    return key


def build_backends(cfg: TextConfig, quiet: bool) -> dict:
    """One backend per stage; stages naming the same model share one loaded copy."""
    loaded: dict[tuple, object] = {}
    backends = {}
    for stage in cfg.stages:
        key = (stage.backend, str(stage.model), stage.device)
        if key not in loaded:
            loaded[key] = load_backend(cfg, stage, quiet)
        backends[stage.name] = loaded[key]
    return backends


def load_backend(cfg: TextConfig, stage: StageConfig, quiet: bool):
    if stage.backend == "openai":
        from bakery.text.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(cfg.openai, read_api_key(cfg))
    from bakery.text.backends.transformers_backend import TransformersBackend

    log.info("text: loading %s model %s", stage.name, stage.model)
    return TransformersBackend(stage.model, stage.device, where=f"text.{stage.name}.model", quiet=quiet,
                               cache_dir=cfg.model_cache, threads=cfg.threads)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settings(cfg: TextConfig, backends: dict, root: Path | None = None) -> dict:
    """Everything that shaped the text, for the manifest (never the API key), in the canonical
    JSON form with root-relative paths (bakery/text/canonical.py)."""
    stages = []
    for stage in cfg.stages:
        entry = {"stage": stage.name, "model": stage.model, **backends[stage.name].identity(),
                 "prompt": stage.prompt, "prompt_sha256": file_sha256(stage.prompt),
                 "chat": stage.chat, "prefix": stage.prefix, "stop": list(stage.stop),
                 "batch_size": stage.batch_size, "min_chars": stage.min_chars, **stage.sampling()}
        stages.append(entry)
    return canonical({"pipeline": cfg.pipeline, "stages": stages, "max_attempts": cfg.max_attempts,
                      "clean": dataclasses.asdict(cfg.clean)}, root)


NOT_SHAPING = ("batch_size", "device")  # rows are sampled independently, on any device


def by_content(stage: dict) -> dict:
    """A stage's settings with its model and prompt identified by content, not location: a
    model whose files are hashed is those files wherever they live (the same venv reached
    through a symlink, or recreated, puts the embedded model at another site-packages path;
    a package upgrade that ships the same file renames it), and a prompt is its sha256."""
    stage = {k: v for k, v in stage.items() if k not in NOT_SHAPING}
    hashes = stage.get("sha256")
    if isinstance(hashes, dict) and hashes:
        for where in ("model", "path", "name"):
            stage.pop(where, None)
        # A folder's files by name (config.json, weights); a single file by content alone.
        stage["sha256"] = hashes if len(hashes) > 1 else sorted(hashes.values())
    if stage.get("prompt_sha256"):
        stage.pop("prompt", None)
    return stage


def text_shaping(settings_entry: dict) -> list:
    """The settings minus what cannot change the text: batch size, device, and where the
    model and prompt are found (bakery/text/stage.py by_content). Manifests written before
    the location rule compare equal when only a location differs: theirs hold the same keys."""
    settings_entry = canonical(settings_entry)  # tuples and lists compare equal
    if not isinstance(settings_entry, dict):  # a damaged manifest: unknown settings
        return [settings_entry]
    stages = [by_content(s) for s in settings_entry.get("stages", []) if isinstance(s, dict)]
    return [settings_entry.get("pipeline"), stages, settings_entry.get("clean")]


def load_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == MANIFEST_VERSION else {}


def recorded_snippets(previous: dict, journal_path: Path) -> dict[str, dict]:
    """Per-ID records of the manifest plus those a killed run journaled after its last save."""
    snippets = previous.get("snippets")
    snippets = {str(k): v for k, v in snippets.items() if isinstance(v, dict)} if isinstance(snippets, dict) else {}
    return {**snippets, **replay(journal_path, JOURNAL_HEADER)}


def chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


@dataclasses.dataclass
class TextPlan:
    """What `text` has to do: the IDs, the manifest read back, and the snippets still to write."""

    cfg: TextConfig
    out_dir: Path
    ids: list[int]
    manifest_path: Path
    previous: dict
    recorded: dict[str, dict]
    todo: list[int]

    @property
    def chunk_size(self) -> int:
        return max(s.batch_size for s in self.cfg.stages)


def plan_text(config, args) -> TextPlan:
    cfg = override_batch_size(config.text, getattr(args, "text_batch_size", None))
    out_dir = text_dir(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    ids = list(config.images.ids)
    manifest_path = out_dir / "manifest.json"
    previous = load_manifest(manifest_path)
    recorded = recorded_snippets(previous, out_dir / JOURNAL_NAME)
    todo = [i for i in ids if not is_done(snippet_path(config, i), recorded.get(str(i)))]
    return TextPlan(cfg, out_dir, ids, manifest_path, previous, recorded, todo)


def local_rounds(pipeline, meter: ItemProgress | None = None):
    """Batches of one attempt → each batch's outcomes, computed here, one batch at a time; the
    work inside a batch (decode steps, API answers) moves `meter` as it goes."""
    advance = meter.advance if meter is not None else None
    return lambda batches, attempt: (pipeline.run([(i, attempt) for i in batch], advance) for batch in batches)


def tokens_of(backends: dict) -> int:
    return sum(getattr(b, "tokens_generated", 0) for b in {id(b): b for b in backends.values()}.values())


def run_text(config, args) -> None:
    plan = plan_text(config, args)
    cfg, out_dir, ids, todo = plan.cfg, plan.out_dir, plan.ids, plan.todo
    if not todo:
        if plan.previous and (out_dir / JOURNAL_NAME).exists():  # a killed run's last records: into the manifest
            write_json_atomic(plan.manifest_path, {**plan.previous, "snippets": plan.recorded})
            (out_dir / JOURNAL_NAME).unlink()
        log.info("text: all %d snippets already done in %s", len(ids), out_dir)
        return
    log.info("text: %d of %d snippets to write (%s pipeline)", len(todo), len(ids), cfg.pipeline)

    from bakery.scale.executor import remote_executor

    started = time.monotonic()
    meter = ItemProgress("text", len(todo), unit="snippet", quiet=args.quiet)
    remote = remote_executor(config, args, "text", local_only=any(s.backend == "openai" for s in cfg.stages))
    if remote is not None:
        from bakery.scale.stages import text_remote

        backends, rounds, tokens = text_remote(remote, cfg, args)
    else:
        backends = build_backends(cfg, quiet=getattr(args, "verbosity", 0) <= 0)  # HF's own bars only with -v
        rounds, tokens = local_rounds(make_pipeline_of(cfg, backends), meter), lambda: tokens_of(backends)
    if getattr(args, "shard", None) is not None:
        from bakery.scale.stages import text_shard

        return text_shard(config, args, plan, settings(cfg, backends, config.root), rounds)
    write_rounds(config, args, plan, settings(cfg, backends, config.root), rounds, tokens, started, meter)


def make_pipeline_of(cfg: TextConfig, backends: dict):
    from bakery.text.pipelines import make_pipeline

    return make_pipeline(cfg, backends)


def write_rounds(config, args, plan: TextPlan, current: dict, rounds, tokens, started: float,
                 meter: ItemProgress | None = None) -> None:
    """Attempt after attempt over what is left: `rounds(batches, attempt)` yields each batch's
    outcomes in order (computed here, on Ray workers, or read back from shards); duplicates
    are checked here, in that order, and every snippet is written and recorded here.
    `meter` shows the progress (the one local rounds report their work inside a batch to)."""
    cfg, out_dir, ids, todo = plan.cfg, plan.out_dir, plan.ids, plan.todo
    manifest_path, previous, recorded = plan.manifest_path, plan.previous, plan.recorded
    done_ids = set(ids) - set(todo)
    entries = {k: v for k, v in recorded.items() if k.isdigit() and int(k) in done_ids}
    manifest = {"version": MANIFEST_VERSION, "settings": current, "snippets": entries, "failed": {}}
    earlier = previous.get("earlier_settings") or previous.get("settings")
    if done_ids and earlier and text_shaping(earlier) != text_shaping(current):
        log.warning("text: %d snippet(s) made with other settings are kept (delete them to regenerate)",
                    len(done_ids))
        manifest["earlier_settings"] = earlier
    write_json_atomic(manifest_path, manifest)
    journal = Journal(out_dir / JOURNAL_NAME, JOURNAL_HEADER, "text")
    # Duplicates across IDs are a cleaning rule too: checked against every kept snippet.
    guard = guard_duplicates(None, cfg, read_snippets(config, done_ids))

    reasons: dict[int, list[str]] = {i: [] for i in todo}
    pending = todo
    meter = meter or ItemProgress("text", len(todo), unit="snippet", quiet=args.quiet)
    with meter:
        for attempt in range(cfg.max_attempts):
            failed = []
            last_attempt = attempt == cfg.max_attempts - 1
            for outcomes in rounds(list(chunks(pending, plan.chunk_size)), attempt):
                written = 0
                for outcome in guard.check(outcomes):
                    i = outcome.snippet_id
                    if outcome.ok:
                        text = outcome.cleaned.text + "\n"
                        write_text_atomic(snippet_path(config, i), text)
                        manifest["snippets"][str(i)] = {"attempts": attempt + 1, "seeds": list(outcome.seeds),
                                                        "chars": len(outcome.cleaned.text),
                                                        "rejected": reasons[i], **record_of(text.encode("utf-8"))}
                        journal.add(i, manifest["snippets"][str(i)])
                        written += 1
                    else:
                        log.debug("text: ID %d attempt %d rejected: %s", i, attempt + 1, outcome.cleaned.reason)
                        reasons[i].append(outcome.cleaned.reason)
                        failed.append(i)
                write_json_atomic(manifest_path, manifest)
                # Rejected ones are sampled again (unless this was the last attempt): more work.
                meter.settle(len(outcomes), written, 0 if last_attempt else len(outcomes) - written)
                meter.set_postfix_str(f"{tokens() / max(time.monotonic() - started, 1e-9):.1f} tok/s")
            pending = failed
            if not pending:
                break
        manifest["failed"] = {str(i): reasons[i] for i in pending}
        write_json_atomic(manifest_path, manifest)
        journal.remove()

    if guard.caught:
        log.info("text: %d duplicate snippet(s) caught and resampled", guard.caught)
    elapsed = time.monotonic() - started
    total_tokens = tokens()
    resampled = sum(1 for i in todo if len(reasons[i]) and i not in pending)
    log.info("text: %d snippet(s) written in %.1fs (%d resampled, %d failed)%s", len(todo) - len(pending),
             elapsed, resampled, len(pending),
             f", {total_tokens} tokens at {total_tokens / elapsed:.1f}/s" if total_tokens else "")
    if pending:
        shown = "; ".join(f"ID {i}: {reasons[i][-1]}" for i in pending[:5])
        more = f" (and {len(pending) - 5} more)" if len(pending) > 5 else ""
        raise StageFailures(f"text: {len(pending)} snippet(s) failed after {cfg.max_attempts} attempt(s): "
                            f"{shown}{more}; the other {len(ids) - len(pending)} are kept "
                            f"(see {manifest_path})")
