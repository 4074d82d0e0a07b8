"""The [text] section: which pipeline, which model per stage, how to sample and clean.

    [text]                pipeline, max_attempts, model_cache, threads
    [text.generate]       the one stage of pipeline = "prompted"
    [text.synopsis]       stage 1 of pipeline = "two_stage" (title + synopsis)
    [text.episode]        stage 2 of pipeline = "two_stage" (the first episode's plot)
    [text.clean]          length limits, end markers, repetition threshold, prompt echo
    [text.openai]         the endpoint used by stages with backend = "openai"

Every stage table takes the same keys (backend, model, prompt, sampling, batch size); a
stage table of the pipeline not in use is still validated, so switching pipelines is one
line. docs/text.md documents every key.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bakery.cpus import usable_cpus
from bakery.tables import Table
from bakery.text.clean import DEFAULT_END_MARKERS, DEFAULT_REJECT_WORDS, CleanRules, content_ngrams

PIPELINES = ("prompted", "two_stage")
PIPELINE_STAGES = {"prompted": ("generate",), "two_stage": ("synopsis", "episode")}
BACKENDS = ("transformers", "openai")
DEVICES = ("auto", "cpu", "cuda")
ENDPOINTS = ("completions", "chat")
EMBEDDED_MODEL = "embedded"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class StageDefaults:
    prompt: str
    prefix: str = ""
    stop: tuple[str, ...] = ()
    chat: bool = False
    max_new_tokens: int = 120
    min_chars: int = 0


STAGE_DEFAULTS = {
    "generate": StageDefaults("content/prompts/plot.txt", chat=True, max_new_tokens=120),
    "synopsis": StageDefaults("content/prompts/synopsis.txt", stop=("\n",), max_new_tokens=100,
                              min_chars=150),
    "episode": StageDefaults("content/prompts/episode.txt", prefix="In the first episode,",
                             max_new_tokens=100, min_chars=150),
}


@dataclass(frozen=True)
class StageConfig:
    """One generation step: a prompt template sent to one backend/model with these settings."""

    name: str
    backend: str
    model: str | Path       # transformers: EMBEDDED_MODEL, a model folder or a .gguf file; openai: a name
    prompt: Path
    chat: bool              # wrap the prompt as a user message (chat template / chat endpoint)
    prefix: str             # appended to the prompt and kept as the start of the output
    stop: tuple[str, ...]   # the output ends before the first of these strings
    batch_size: int
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    min_chars: int          # this stage's own output must reach this length (after cleaning)
    device: str

    def sampling(self) -> dict:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_k": self.top_k, "top_p": self.top_p,
                "repetition_penalty": self.repetition_penalty}


@dataclass(frozen=True)
class OpenAIConfig:
    """An OpenAI-compatible HTTP API; the key is read from the environment variable api_key_env."""

    base_url: str
    model: str
    api_key_env: str        # the NAME of the variable ("" = send no key, e.g. a local server)
    endpoint: str | None    # "completions" (POST /completions), "chat" (POST /chat/completions),
                            # None: each stage's `chat` decides (chat-style prompt → chat endpoint)
    concurrency: int
    requests_per_minute: float
    timeout_s: float
    max_retries: int
    backoff_s: float
    max_backoff_s: float
    extra_body: dict = field(default_factory=dict)  # merged into every request (openai SDK's extra_body)

    def endpoint_for(self, stage: StageConfig) -> str:
        return self.endpoint or ("chat" if stage.chat else "completions")


@dataclass(frozen=True)
class TextConfig:
    enabled: bool
    pipeline: str
    stages: tuple[StageConfig, ...]   # the stages of the pipeline in use, in order
    clean: CleanRules
    openai: OpenAIConfig | None
    max_attempts: int
    model_cache: Path | None = None   # converted (GGUF) models are cached here; None: no cache
    threads: int = 1                  # torch CPU threads for local models (resolved: never 0)
    all_stages: dict[str, StageConfig] = field(default_factory=dict, compare=False, repr=False)


def parse_stage(t: Table, name: str, used: bool, openai: OpenAIConfig | None) -> StageConfig:
    d = STAGE_DEFAULTS[name]
    backend = t.str("backend", "transformers", choices=BACKENDS)
    check = used or bool(t.data)
    if backend == "openai":
        if openai is None:
            raise t.error("backend", "is \"openai\" but there is no [text.openai] table "
                                     "(base_url, model, api_key_env)")
        model: str | Path = t.str("model", openai.model, allow_empty=False)
    else:
        text = t.str("model", EMBEDDED_MODEL, allow_empty=False)
        model = EMBEDDED_MODEL if text == EMBEDDED_MODEL else t.path_value("model")
        if check and model != EMBEDDED_MODEL and not Path(model).exists():
            raise t.error("model", f"not found: {model} (a model folder, a .gguf file or \"embedded\")")
    stop = t.str_list("stop", list(d.stop))
    if any(s == "" for s in stop):
        raise t.error("stop", "must not contain empty strings")
    stage = StageConfig(
        name=name,
        backend=backend,
        model=model,
        prompt=t.path_value("prompt", d.prompt, must_exist=check),
        chat=t.bool("chat", d.chat),
        prefix=t.str("prefix", d.prefix),
        stop=stop,
        batch_size=t.int("batch_size", 12, min=1, max=1024),
        max_new_tokens=t.int("max_new_tokens", d.max_new_tokens, min=1, max=8192),
        temperature=t.float("temperature", 0.7, min=0.0, max=5.0),
        top_k=t.int("top_k", 30, min=0),
        top_p=t.float("top_p", 1.0, min=0.0, max=1.0),
        repetition_penalty=t.float("repetition_penalty", 1.1, min=1.0, max=5.0),
        min_chars=t.int("min_chars", d.min_chars, min=0),
        device=t.str("device", "auto", choices=DEVICES),
    )
    if stage.top_p == 0.0:
        raise t.error("top_p", "must be above 0 (1.0 disables nucleus sampling)")
    t.finish()
    return stage


def parse_openai(t: Table) -> OpenAIConfig:
    base_url = t.str("base_url", allow_empty=False).rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise t.error("base_url", f"must be an http:// or https:// URL, got {base_url!r}")
    key_env = t.str("api_key_env", "OPENAI_API_KEY")
    if key_env and not ENV_NAME.match(key_env):
        # Someone pasted the key itself: say so without echoing it back.
        raise t.error("api_key_env", "must be the NAME of an environment variable holding the key "
                                     "(like OPENAI_API_KEY), not the key itself")
    cfg = OpenAIConfig(
        base_url=base_url,
        model=t.str("model", allow_empty=False),
        api_key_env=key_env,
        endpoint=t.str("endpoint", None, choices=ENDPOINTS),
        concurrency=t.int("concurrency", 4, min=1, max=256),
        requests_per_minute=t.float("requests_per_minute", 60.0, min=0.0),
        timeout_s=t.float("timeout_s", 60.0, min=0.1, max=3600.0),
        max_retries=t.int("max_retries", 5, min=0, max=100),
        backoff_s=t.float("backoff_s", 1.0, min=0.0, max=600.0),
        max_backoff_s=t.float("max_backoff_s", 60.0, min=0.0, max=3600.0),
        extra_body=parse_extra_body(t),
    )
    if cfg.requests_per_minute == 0:
        raise t.error("requests_per_minute", "must be above 0")
    t.finish()
    return cfg


# Keys every request already carries; each has its own config key, so that the manifest
# records it and the two cannot disagree.
REQUEST_KEYS = {"model": "text.openai.model or the stage's model", "prompt": "the stage's prompt",
                "messages": "the stage's prompt", "max_tokens": "the stage's max_new_tokens",
                "temperature": "the stage's temperature", "top_p": "the stage's top_p",
                "seed": "nothing: it is the per-ID sub-seed", "stop": "the stage's stop",
                "n": "nothing: one completion per request", "stream": "nothing: answers are read whole"}
MAX_EXTRA_DEPTH = 16


def parse_extra_body(t: Table) -> dict:
    """[text.openai.extra_body]: server-specific options (top_k, repetition_penalty,
    generation_config, ...) sent as they are; only JSON values, every float finite."""
    extra = t.raw("extra_body", {})
    if not isinstance(extra, dict):
        raise t.error("extra_body", "must be a table (e.g. extra_body = { top_k = 30 })")
    for key in extra:
        if key in REQUEST_KEYS:
            raise t.error(f"extra_body.{key}", f"is sent by the bakery already: set {REQUEST_KEYS[key]}")
    stack = [(f"extra_body.{k}", v, 1) for k, v in extra.items()]
    while stack:  # iterative: a deeply nested value must not blow the call stack
        where, value, depth = stack.pop()
        if depth > MAX_EXTRA_DEPTH:
            raise t.error(where, f"nests deeper than {MAX_EXTRA_DEPTH} levels")
        if isinstance(value, dict):
            stack += [(f"{where}.{k}", v, depth + 1) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{where}[{i}]", v, depth + 1) for i, v in enumerate(value)]
        elif isinstance(value, float):
            t.check_finite(where, value)
        elif not isinstance(value, (str, int, bool)):
            raise t.error(where, f"must be a string, number, boolean, array or table (JSON), "
                                 f"got {type(value).__name__}")
    return extra


def parse_clean(t: Table) -> CleanRules:
    rules = CleanRules(
        min_chars=t.int("min_chars", 150, min=0),
        max_chars=t.int("max_chars", 700, min=20),
        ellipsis=t.str("ellipsis", "…"),
        end_markers=t.str_list("end_markers", list(DEFAULT_END_MARKERS)),
        repeat_ngram=t.int("repeat_ngram", 4, min=1, max=20),
        max_repeat_fraction=t.float("max_repeat_fraction", 0.35, min=0.0, max=1.0),
        reject_words=t.str_list("reject_words", list(DEFAULT_REJECT_WORDS)),
        echo_ngram=t.int("echo_ngram", 2, min=0, max=8),
        max_echo=t.int("max_echo", 5, min=0, max=10_000),
        echo_allow=t.str_list("echo_allow", []),
    )
    if rules.max_chars < rules.min_chars:
        raise t.error("max_chars", f"{rules.max_chars} is below min_chars ({rules.min_chars})")
    if len(rules.ellipsis) >= rules.max_chars // 2:
        raise t.error("ellipsis", "is too long for max_chars")
    for name in ("end_markers", "reject_words", "echo_allow"):
        if any(not m.strip() for m in getattr(rules, name)):
            raise t.error(name, "must not contain empty strings")
    for phrase in rules.echo_allow if rules.echo_ngram else ():
        if not content_ngrams(phrase, rules.echo_ngram):  # it would silently allow nothing
            raise t.error("echo_allow", f"{phrase!r} holds no run of {rules.echo_ngram} words without a "
                                        "common word (a, the, of, …): write the whole phrase")
    t.finish()
    return rules


def user_cache_dir(environ=os.environ) -> Path:
    """$XDG_CACHE_HOME/bakery, or ~/.cache/bakery (the XDG base directory default). Read
    here, while the config is parsed, so that nothing deeper looks at the environment."""
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the spec: a relative value is ignored
        base = str(Path.home() / ".cache")
    return Path(base) / "bakery"


def default_threads() -> int:
    """Half the logical CPUs this process may use (llama.cpp's default: one per physical core where cores have two
    hardware threads). torch's own default, every CPU, makes its OpenMP threads spin-wait
    for each other: on a 2-core machine with anything else running, a batch-36 matrix
    product took 10-20x longer with 2 threads than with 1 (docs/text.md, "Speed")."""
    return max(1, usable_cpus() // 2)


def parse_model_cache(t: Table) -> Path | None:
    """[text] model_cache: a folder, true (default: the user's cache folder) or false (none)."""
    value = t.raw("model_cache", True)
    if value is False:
        return None
    if value is True:
        try:
            return user_cache_dir() / "models"
        except RuntimeError:  # no HOME and no XDG_CACHE_HOME
            raise t.error("model_cache", "no user cache folder is known (HOME is not set): "
                                         "give a folder or false") from None
    if isinstance(value, str):
        return t.path_value("model_cache")
    raise t.error("model_cache", f"must be a folder path, true or false, got {type(value).__name__}")


def parse_text(t: Table) -> TextConfig:
    pipeline = t.str("pipeline", "prompted", choices=PIPELINES)
    enabled = t.bool("enabled", True)  # a disabled stage does not need its prompt files
    openai_table = t.table("openai")
    openai = parse_openai(openai_table) if openai_table.data else None
    stages = {name: parse_stage(t.table(name), name, enabled and name in PIPELINE_STAGES[pipeline], openai)
              for name in STAGE_DEFAULTS}
    cfg = TextConfig(
        enabled=enabled,
        pipeline=pipeline,
        stages=tuple(stages[name] for name in PIPELINE_STAGES[pipeline]),
        clean=parse_clean(t.table("clean")),
        openai=openai,
        max_attempts=t.int("max_attempts", 4, min=1, max=100),
        model_cache=parse_model_cache(t),
        threads=t.int("threads", 0, min=0, max=1024) or default_threads(),
        all_stages=stages,
    )
    t.finish()
    return cfg
