"""[text] validation: every bad key is one ConfigError naming it."""

import pytest

from bakery.config import load_config
from bakery.errors import ConfigError
from bakery.text.config import EMBEDDED_MODEL
from text_support import REPO, write_project


def load(tmp_path, text_toml, prompts=None):
    return load_config(write_project(tmp_path, text_toml, prompts=prompts))


def test_defaults(tmp_path):
    cfg = load(tmp_path, "").text
    assert cfg.pipeline == "prompted" and [s.name for s in cfg.stages] == ["generate"]
    stage = cfg.stages[0]
    assert stage.backend == "transformers" and stage.model == EMBEDDED_MODEL
    assert stage.prompt == tmp_path / "content/prompts/plot.txt"
    assert (stage.top_k, stage.temperature) == (30, 0.7)
    assert cfg.openai is None and cfg.max_attempts >= 1


def test_shipped_config_parses():
    cfg = load_config(REPO / "content/site.toml").text
    assert cfg.stages and all(s.prompt.is_file() for s in cfg.stages)
    assert all(s.prompt.is_file() for s in cfg.all_stages.values())


def test_two_stage_with_openai_first_stage(tmp_path):
    cfg = load(tmp_path, """
[text]
pipeline = "two_stage"
[text.openai]
base_url = "http://127.0.0.1:9/v1/"
model = "gpt-test"
api_key_env = "MY_KEY"
[text.synopsis]
backend = "openai"
stop = ["\\n"]
[text.episode]
max_new_tokens = 50
""", prompts={"synopsis.txt": "x", "episode.txt": "{header}"}).text
    synopsis, episode = cfg.stages
    assert synopsis.backend == "openai" and synopsis.model == "gpt-test"
    assert episode.backend == "transformers" and episode.max_new_tokens == 50
    assert cfg.openai.base_url == "http://127.0.0.1:9/v1" and cfg.openai.api_key_env == "MY_KEY"


@pytest.mark.parametrize("toml, key, problem", [
    ('[text]\npipeline = "three_stage"', "text.pipeline", "must be one of"),
    ('[text]\nmax_attempts = 0', "text.max_attempts", "out of range"),
    ('[text]\nbogus = 1', "text.bogus", "unknown key"),
    ('[text.generate]\ntop_k = "thirty"', "text.generate.top_k", "must be an integer"),
    ('[text.generate]\ntop_p = 0.0', "text.generate.top_p", "above 0"),
    ('[text.generate]\ntemperature = -1', "text.generate.temperature", "out of range"),
    ('[text.generate]\nbatch_size = 0', "text.generate.batch_size", "out of range"),
    ('[text.generate]\nrepetition_penalty = 0.5', "text.generate.repetition_penalty", "out of range"),
    ('[text.generate]\nbackend = "llama"', "text.generate.backend", "must be one of"),
    ('[text.generate]\nprompt = "content/prompts/missing.txt"', "text.generate.prompt", "not found"),
    ('[text.generate]\nmodel = "models/nowhere"', "text.generate.model", "not found"),
    ('[text.generate]\nbackend = "openai"', "text.generate.backend", "no [text.openai]"),
    ('[text.generate]\nstop = [""]', "text.generate.stop", "empty"),
    ('[text.generate]\ntypo_key = 1', "text.generate.typo_key", "unknown key"),
    ('[text.clean]\nmin_chars = 500\nmax_chars = 100', "text.clean.max_chars", "below min_chars"),
    ('[text.clean]\nmax_repeat_fraction = 2', "text.clean.max_repeat_fraction", "out of range"),
    ('[text.clean]\necho_ngram = 9', "text.clean.echo_ngram", "out of range"),
    ('[text.clean]\nmax_echo = -1', "text.clean.max_echo", "out of range"),
    ('[text.clean]\necho_allow = "first episode"', "text.clean.echo_allow", "list of strings"),
    ('[text.clean]\necho_allow = [""]', "text.clean.echo_allow", "empty"),
    ('[text.clean]\necho_allow = ["of the"]', "text.clean.echo_allow", "holds no run of 2 words"),
    ('[text.clean]\necho_ngram = 3\necho_allow = ["first episode"]', "text.clean.echo_allow", "holds no run of 3"),
    ('[text.openai]\nmodel = "m"', "text.openai.base_url", "required"),
    ('[text.openai]\nbase_url = "ftp://x"\nmodel = "m"', "text.openai.base_url", "http"),
    ('[text.openai]\nbase_url = "http://x"\nmodel = "m"\nendpoint = "edits"', "text.openai.endpoint", "one of"),
    ('[text.openai]\nbase_url = "http://x"\nmodel = "m"\nconcurrency = 0', "text.openai.concurrency", "range"),
    ('[text.openai]\nbase_url = "http://x"\nmodel = "m"\nrequests_per_minute = 0', "text.openai.requests_per_minute", "above 0"),
])
def test_bad_values_name_the_key(tmp_path, toml, key, problem):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, toml)
    message = str(err.value)
    assert key in message and problem in message and "\n" not in message


def test_pasted_api_key_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, '[text.openai]\nbase_url = "http://x"\nmodel = "m"\napi_key_env = "sk-abc123-secret"')
    assert "text.openai.api_key_env" in str(err.value) and "sk-abc123-secret" not in str(err.value)


def test_unused_stage_tables_are_validated_too(tmp_path):
    with pytest.raises(ConfigError, match=r"text\.episode\.top_k"):
        load(tmp_path, '[text.episode]\ntop_k = -1', prompts={"plot.txt": "x", "episode.txt": "x"})


def test_cli_batch_override_applies_to_every_stage(tmp_path):
    from bakery.text.stage import override_batch_size

    cfg = load(tmp_path, "").text
    assert [s.batch_size for s in override_batch_size(cfg, 3).stages] == [3]
