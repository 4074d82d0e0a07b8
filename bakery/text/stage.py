"""`bakery text`: one cleaned snippet per ID → build/text/snippet-{ID}.txt, resumably.

- IDs are config.images.ids (ID == seed), so every face gets its snippet.
- A snippet file that exists with text in it is done and skipped; a missing, empty or
  unreadable one is (re)generated. Files are written atomically, so a killed run leaves
  only complete snippets (and at most a stray .tmp-* that the next run removes).
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
from bakery.progress import progress
from bakery.text.config import StageConfig, TextConfig

log = logging.getLogger("bakery.text")
MANIFEST_VERSION = 1


def text_dir(config) -> Path:
    return config.build_dir / "text"


def snippet_path(config, snippet_id: int) -> Path:
    return text_dir(config) / f"snippet-{snippet_id}.txt"


def is_done(path: Path) -> bool:
    """A snippet counts as done when it holds readable, non-blank UTF-8 text."""
    try:
        return bool(path.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return False


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
    return TransformersBackend(stage.model, stage.device, where=f"text.{stage.name}.model", quiet=quiet)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def settings(cfg: TextConfig, backends: dict) -> dict:
    """Everything that shaped the text, for the manifest (never the API key)."""
    stages = []
    for stage in cfg.stages:
        entry = {"stage": stage.name, "model": str(stage.model), **backends[stage.name].identity(),
                 "prompt": str(stage.prompt), "prompt_sha256": file_sha256(stage.prompt),
                 "chat": stage.chat, "prefix": stage.prefix, "stop": list(stage.stop),
                 "batch_size": stage.batch_size, "min_chars": stage.min_chars, **stage.sampling()}
        stages.append(entry)
    return {"pipeline": cfg.pipeline, "stages": stages, "max_attempts": cfg.max_attempts,
            "clean": dataclasses.asdict(cfg.clean)}


def text_shaping(settings_entry: dict) -> list:
    """The settings minus what cannot change the text (batch size and device: rows are
    sampled independently)."""
    stages = [{k: v for k, v in s.items() if k not in ("batch_size", "device")}
              for s in settings_entry.get("stages", [])]
    return [settings_entry.get("pipeline"), stages, settings_entry.get("clean")]


def load_manifest(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == MANIFEST_VERSION else {}


def chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run_text(config, args) -> None:
    cfg = override_batch_size(config.text, getattr(args, "text_batch_size", None))
    out_dir = text_dir(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    ids = list(config.images.ids)
    todo = [i for i in ids if not is_done(snippet_path(config, i))]
    manifest_path = out_dir / "manifest.json"
    previous = load_manifest(manifest_path)
    if not todo:
        log.info("text: all %d snippets already done in %s", len(ids), out_dir)
        return
    log.info("text: %d of %d snippets to write (%s pipeline)", len(todo), len(ids), cfg.pipeline)

    from bakery.text.pipelines import make_pipeline

    started = time.monotonic()
    backends = build_backends(cfg, quiet=getattr(args, "verbosity", 0) <= 0)  # HF's own bars only with -v
    pipeline = make_pipeline(cfg, backends)
    current = settings(cfg, backends)
    done_ids = set(ids) - set(todo)
    entries = {k: v for k, v in previous.get("snippets", {}).items() if k.isdigit() and int(k) in done_ids}
    manifest = {"version": MANIFEST_VERSION, "settings": current, "snippets": entries, "failed": {}}
    earlier = previous.get("earlier_settings") or previous.get("settings")
    if done_ids and earlier and text_shaping(earlier) != text_shaping(current):
        log.warning("text: %d snippet(s) made with other settings are kept (delete them to regenerate)",
                    len(done_ids))
        manifest["earlier_settings"] = earlier
    write_json_atomic(manifest_path, manifest)

    reasons: dict[int, list[str]] = {i: [] for i in todo}
    pending = todo
    chunk_size = max(s.batch_size for s in cfg.stages)
    with progress(None, "text", total=len(todo), unit="snippet", quiet=args.quiet) as bar:
        for attempt in range(cfg.max_attempts):
            failed = []
            for batch in chunks(pending, chunk_size):
                for outcome in pipeline.run([(i, attempt) for i in batch]):
                    i = outcome.snippet_id
                    if outcome.ok:
                        write_text_atomic(snippet_path(config, i), outcome.cleaned.text + "\n")
                        manifest["snippets"][str(i)] = {"attempts": attempt + 1, "seeds": list(outcome.seeds),
                                                        "chars": len(outcome.cleaned.text),
                                                        "rejected": reasons[i]}
                        bar.update(1)  # per finished snippet, not per batch
                    else:
                        log.debug("text: ID %d attempt %d rejected: %s", i, attempt + 1, outcome.cleaned.reason)
                        reasons[i].append(outcome.cleaned.reason)
                        failed.append(i)
                write_json_atomic(manifest_path, manifest)
                tokens = sum(getattr(b, "tokens_generated", 0) for b in {id(b): b for b in backends.values()}.values())
                bar.set_postfix_str(f"{tokens / max(time.monotonic() - started, 1e-9):.1f} tok/s")
            pending = failed
            if not pending:
                break
        manifest["failed"] = {str(i): reasons[i] for i in pending}
        write_json_atomic(manifest_path, manifest)

    elapsed = time.monotonic() - started
    tokens = sum(getattr(b, "tokens_generated", 0) for b in {id(b): b for b in backends.values()}.values())
    resampled = sum(1 for i in todo if len(reasons[i]) and i not in pending)
    log.info("text: %d snippet(s) written in %.1fs (%d resampled, %d failed)%s", len(todo) - len(pending),
             elapsed, resampled, len(pending), f", {tokens} tokens at {tokens / elapsed:.1f}/s" if tokens else "")
    if pending:
        shown = "; ".join(f"ID {i}: {reasons[i][-1]}" for i in pending[:5])
        more = f" (and {len(pending) - 5} more)" if len(pending) > 5 else ""
        raise StageFailures(f"text: {len(pending)} snippet(s) failed after {cfg.max_attempts} attempt(s): "
                            f"{shown}{more}; the other {len(ids) - len(pending)} are kept "
                            f"(see {manifest_path})")
