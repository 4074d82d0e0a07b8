"""Config fuzzing (issue 10): hundreds of mutations of a valid site.toml over the [site],
[images] (generate) and [text] sections. Every one must either load or fail with a
ConfigError/BakeryError (the one-line errors the CLI prints); no other exception, and no
NaN or infinity anywhere in a config that loads. A config that loads then runs the site,
generate and text stages up to where they would load a model: the checkpoint is a broken
file and the text API a closed local port, so each of those ends in a BakeryError too."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import random
import shutil
from pathlib import Path


from bakery.cli import main
from bakery.config import load_config
from bakery.errors import BakeryError
from bakery.images.config import EMBEDDED_MODEL
from tests.conftest import REPO

MUTATIONS = 300
SECTIONS = ("site", "images", "text")

BASE = {
    "site": {"title": "T", "description": "d", "refresh_seconds": 15, "base_url": "https://waifus.example",
             "build_dir": "build", "public_dir": "public", "templates_dir": str(REPO / "templates"),
             "static_dir": str(REPO / "static"),
             "noscript_id": 1, "analytics": {"script": "https://stats.example.com/s.js",
                                             "attributes": {"data-domain": "waifus.example"}}},
    "images": {"model": "models/broken.pkl", "batch_size": 4, "noise": "const", "truncation_cutoff": 8,
               "bands": [{"seeds": "0-3", "psi": 0.7}, {"seeds": "4-5", "psi": 1.1, "noise": "seeded"}]},
    "text": {"pipeline": "prompted", "max_attempts": 3, "enabled": True,
             "openai": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "", "concurrency": 2,
                        "requests_per_minute": 6000.0, "timeout_s": 5.0, "max_retries": 0, "backoff_s": 0.5,
                        "max_backoff_s": 2.0, "extra_body": {"top_k": 30, "generation_config": {"do_sample": True}}},
             "generate": {"backend": "openai", "prompt": "content/prompts/plot.txt", "chat": True, "prefix": "",
                          "stop": ["\n\n"], "batch_size": 4, "max_new_tokens": 50, "temperature": 0.8,
                          "top_k": 30, "top_p": 0.95, "repetition_penalty": 1.1, "min_chars": 0, "device": "cpu"},
             "synopsis": {"prompt": "content/prompts/synopsis.txt", "stop": ["\n"], "min_chars": 150},
             "episode": {"prompt": "content/prompts/episode.txt", "prefix": "In the first episode,"},
             "clean": {"min_chars": 100, "max_chars": 600, "ellipsis": "…", "repeat_ngram": 4,
                       "max_repeat_fraction": 0.35, "end_markers": ["</s>"], "reject_words": ["nazi"]}},
}

HOSTILE = [
    math.nan, math.inf, -math.inf, -0.0, 1e308, -1, 0, 1, 2 ** 31, 2 ** 63 - 1, -(2 ** 63), True, False,
    "", " ", "\x00", "a\nb", "nan", "inf", "1e9", "~nosuchuser-fuzz/x", "/proc", "/proc/self/x", "/dev/null",
    "/", ".", "..", "build", "static", "public/build", "site.toml", "content/site.toml/x", "0-4294967296",
    "0-99999999999999999999", "4294967295", "-1-5", "5-2", "0-3,5", "https://x.example 'unsafe-inline' *;/a.js",
    "http://", "https://", "javascript:alert(1)", "é" * 300, "{id}" * 50, [], [1, "a"], ["\x00"], [""],
    {}, {"a": {"b": 1}}, {"nan": math.nan}, datetime.date(2020, 1, 1), datetime.time(12, 0),
    [[[[[[1]]]]]], [math.nan],
]


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON's escapes are TOML basic-string escapes
    if isinstance(v, (datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def toml_document(doc: dict) -> str:
    return "".join(f"{name} = {toml_value(value)}\n" for name, value in doc.items())


def leaf_paths(value, path=()):
    """Every key path (dict keys and list indexes) below `value`, tables included."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield path + (key,)
        yield from leaf_paths(child, path + (key,))


def mutate(doc: dict, rng: random.Random) -> tuple[dict, str]:
    doc = json.loads(json.dumps(doc))
    section = rng.choice(SECTIONS)
    path = (section,) + rng.choice(list(leaf_paths(doc[section])))
    *parents, last = path
    holder = doc
    for key in parents:
        holder = holder[key]
    kind = rng.random()
    if kind < 0.75:
        value = rng.choice(HOSTILE)
        holder[last] = value
        return doc, f"{'.'.join(map(str, path))} = {value!r}"[:200]
    if kind < 0.85 and isinstance(holder, dict):
        del holder[last]
        return doc, f"delete {'.'.join(map(str, path))}"
    if isinstance(holder, dict):
        holder[last + "_x"] = rng.choice(HOSTILE)
        return doc, f"unknown key {'.'.join(map(str, path))}_x"
    holder[last] = {"seeds": "0-3"}
    return doc, f"{'.'.join(map(str, path))} = a table"


def non_finite_floats(value, where="config"):
    if isinstance(value, float) and not math.isfinite(value):
        yield where
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from non_finite_floats(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from non_finite_floats(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from non_finite_floats(v, f"{where}[{i}]")


def project(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "content" / "prompts", tmp_path / "content" / "prompts")
    (tmp_path / "templates").mkdir()
    (tmp_path / "static").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "broken.pkl").write_bytes(b"\x80\x03not a network")
    return tmp_path / "content" / "site.toml"


def check(path: Path, doc: dict | None, text: str | None = None) -> str:
    """'ok' or 'refused'; anything else fails the test with the exception."""
    path.write_text(text if text is not None else toml_document(doc), encoding="utf-8")
    try:
        config = load_config(path)
    except BakeryError as exc:
        assert "\n" not in str(exc), str(exc)
        return "refused"
    bad = list(non_finite_floats(config))
    assert not bad, f"accepted a non-finite number at {bad[0]}"
    assert len(config.images.ids) <= 10_000_000
    for stage in stages_without_models(config):
        assert main(["-q", "-c", str(path), stage]) in (0, 1, 2)  # an exception would escape main
    return "ok"


def stages_without_models(config) -> list[str]:
    stages = ["site"]
    if config.images.model != EMBEDDED_MODEL:
        stages.append("generate")  # fails reading the broken checkpoint, before TensorFlow
    if all(s.backend == "openai" for s in config.text.stages) and config.text.openai.max_retries == 0:
        stages.append("text")      # fails on the closed port at the first request
    return stages


def test_valid_base_config_loads(tmp_path):
    assert check(project(tmp_path), BASE) == "ok"


def test_fuzzed_configs_give_one_line_errors_and_never_accept_nan(tmp_path):
    path = project(tmp_path)
    rng = random.Random(20261203)
    outcomes = {"ok": 0, "refused": 0}
    for n in range(MUTATIONS):
        doc, what = mutate(BASE, rng)
        try:
            outcomes[check(path, doc)] += 1
        except AssertionError:
            raise
        except Exception as exc:  # a traceback a user would have seen
            raise AssertionError(f"mutation {n} ({what}) crashed: {type(exc).__name__}: {exc}") from None
    # Text-level attacks a dict cannot express: deep nesting, broken bytes.
    for text in ["x = " + "[" * 5000 + "]" * 5000, "x = " + "{a = " * 3000 + "1" + "}" * 3000,
                 "[site]\ntitle = \"\\ud800\"", "\x00", "[site]\n" + "a." * 3000 + "b = 1"]:
        outcomes[check(path, None, text)] += 1
    assert outcomes["refused"] >= 100 and outcomes["ok"] >= 10, outcomes  # both branches were exercised
