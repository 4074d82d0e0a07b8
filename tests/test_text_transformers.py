"""The transformers backend on a tiny random GPT-2 (seconds), and the embedded SmolLM2 (slow)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from bakery.cli import main
from bakery.config import load_config
from bakery.text.backends import Request
from text_support import build_tiny_gpt2, tiny_toml, write_project



@pytest.fixture(autouse=True)
def offline(monkeypatch):
    # Prove that nothing reaches for a model hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="module")
def backend(tiny_model):
    from bakery.text.backends.transformers_backend import TransformersBackend

    return TransformersBackend(tiny_model)


def stage_for(tmp_path, model, **changes):
    cfg = load_config(write_project(tmp_path, tiny_toml(model))).text
    return dataclasses.replace(cfg.stages[0], **changes)


def test_sample_depends_on_seed_not_on_batch(tmp_path, tiny_model, backend):
    stage = stage_for(tmp_path, tiny_model, batch_size=4)
    prompts = ["Plot:", "A much longer prompt about the summer festival and the shrine:", "Idol:", "Mecha:"]
    together = backend.generate([Request(p, 100 + n) for n, p in enumerate(prompts)], stage)
    alone = [backend.generate([Request(p, 100 + n)], stage)[0] for n, p in enumerate(prompts)]
    shuffled = backend.generate([Request(prompts[2], 102), Request(prompts[0], 100)],
                                dataclasses.replace(stage, batch_size=2))
    assert together == alone  # left padding and per-row generators: the batch does not matter
    assert shuffled == [together[2], together[0]]
    assert backend.generate([Request(prompts[0], 101)], stage) != [together[0]]  # the seed does


def test_a_resample_draws_a_new_sample(tmp_path, tiny_model, backend):
    from bakery.text.pipelines import sub_seed

    stage = stage_for(tmp_path, tiny_model)
    first, again, resample, stage2 = backend.generate(
        [Request("Plot:", sub_seed(7, 0)), Request("Plot:", sub_seed(7, 0)), Request("Plot:", sub_seed(7, 1)),
         Request("Plot:", sub_seed(7, 0, 1))], stage)
    assert first == again
    # torch's CPU generator drops a seed's bits above 32, which would make these equal to `first`
    assert resample != first and stage2 != first and resample != stage2


def test_sampling_settings_take_effect(tmp_path, tiny_model, backend):
    stage = stage_for(tmp_path, tiny_model)
    greedy = dataclasses.replace(stage, temperature=0.0)
    a = backend.generate([Request("Plot:", 1), Request("Plot:", 2)], greedy)
    assert a[0] == a[1]  # temperature 0 is greedy: the seed no longer matters
    before = backend.tokens_generated
    backend.generate([Request("Plot:", 1), Request("Idol:", 2)], dataclasses.replace(stage, max_new_tokens=3))
    assert 0 < backend.tokens_generated - before <= 6


class ScriptedModel(torch.nn.Module):
    """A stand-in causal LM: the next token is a fixed function of the last one (greedy follows it)."""

    def __init__(self, follows: dict[int, int], vocab: int = 20):
        super().__init__()
        self.follows, self.vocab, self.batch_sizes = follows, vocab, []

    def forward(self, input_ids, attention_mask, position_ids, past_key_values=None, use_cache=True):
        assert input_ids.shape == position_ids.shape and attention_mask.shape[0] == input_ids.shape[0]
        self.batch_sizes.append(input_ids.shape[0])
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], self.vocab)
        for row, last in enumerate(input_ids[:, -1].tolist()):
            logits[row, -1, self.follows[last]] = 10.0
        return type("Out", (), {"logits": logits, "past_key_values": None})()


def test_generation_stops_at_end_of_text(tmp_path, tiny_model):
    from bakery.text.backends.transformers_backend import sample

    stage = dataclasses.replace(stage_for(tmp_path, tiny_model), temperature=0.0, max_new_tokens=8,
                                repetition_penalty=1.0)
    eos = 19
    chain = {1: 3, 3: 4, 4: eos, eos: 5,                                   # row 0: 3 4 <eos>
             2: 5, 5: 6, 6: 7, 7: 8, 8: 10, 10: 11, 11: 12, 12: 13, 13: 5,  # row 1: never ends
             14: eos}                                                       # row 2: <eos> at once
    model = ScriptedModel(chain)
    prompts = torch.tensor([[0, 1], [0, 2], [0, 14]])
    rows = sample(model, prompts, torch.ones(3, 2, dtype=torch.long),
                  [torch.Generator().manual_seed(i) for i in range(3)], stage, torch.tensor([eos]), pad_id=0)
    assert rows == [[3, 4], [5, 6, 7, 8, 10, 11, 12, 13], []]
    # Finished rows leave the batch; the last row stops at max_new_tokens.
    assert model.batch_sizes == [3, 2, 2, 1, 1, 1, 1, 1]


def test_stop_strings_end_the_output(tmp_path, tiny_model, backend):
    stage = stage_for(tmp_path, tiny_model, max_new_tokens=40)
    free = backend.generate([Request("Plot:", 7)], stage)[0]
    letter = next(ch for ch in free[3:] if ch.isalpha())
    cut = backend.generate([Request("Plot:", 7)], dataclasses.replace(stage, stop=(letter,)))[0]
    assert letter not in cut and free.lstrip().startswith(cut)


def test_progress_is_reported_per_decode_step_and_adds_up_to_the_requests(tmp_path, tiny_model, backend):
    stage = stage_for(tmp_path, tiny_model, batch_size=3, max_new_tokens=24)
    calls = []
    backend.generate([Request("Plot:", seed) for seed in range(5)], stage, calls.append)
    assert sum(calls) == pytest.approx(5.0)  # 5 requests' worth, whenever each row ended
    assert len(calls) >= 2 * 2 and all(c > 0 for c in calls)  # steps of both sub-batches (3 + 2 rows)
    assert calls[0] == pytest.approx(3 / 24)  # the first step: one token of each of 3 rows


def test_bakery_text_writes_resumes_and_records(tmp_path, tiny_model):
    config = write_project(tmp_path, tiny_toml(tiny_model), seeds="0-4")
    assert main(["-q", "-c", str(config), "text"]) == 0
    out = tmp_path / "build/text"
    snippets = {i: (out / f"snippet-{i}.txt").read_text(encoding="utf-8") for i in range(5)}
    assert all(len(s.strip()) >= 20 for s in snippets.values())
    manifest = json.loads((out / "manifest.json").read_text())
    stage = manifest["settings"]["stages"][0]
    assert stage["backend"] == "transformers" and stage["top_k"] == 30
    assert set(stage["sha256"]) >= {"model.safetensors", "config.json"}
    assert all(len(h) == 64 for h in stage["sha256"].values())
    assert set(manifest["snippets"]) == {"0", "1", "2", "3", "4"}
    assert all(e["attempts"] >= 1 for e in manifest["snippets"].values())

    # Missing and empty snippets are redone (identically: the seed is the ID); done ones are skipped.
    (out / "snippet-1.txt").unlink()
    (out / "snippet-3.txt").write_text("  \n", encoding="utf-8")
    untouched = (out / "snippet-0.txt").stat().st_mtime_ns
    (out / ".tmp-snippet-2.txt.abc").write_text("half", encoding="utf-8")
    assert main(["-q", "-c", str(config), "text", "--text-batch-size", "2"]) == 0
    assert (out / "snippet-0.txt").stat().st_mtime_ns == untouched
    assert {i: (out / f"snippet-{i}.txt").read_text(encoding="utf-8") for i in range(5)} == snippets
    assert not list(out.glob(".tmp-*"))


def test_the_same_model_through_another_path_is_not_a_change(tmp_path, tiny_model, capsys):
    """The same files reached through a symlink (a venv reached through a symlink, or
    recreated elsewhere) are the same model: nothing is redone and nothing is warned about,
    also against a manifest written before models were compared by content."""
    config = write_project(tmp_path, tiny_toml(tiny_model), seeds="0-2")
    out = tmp_path / "build/text"
    assert main(["-q", "-c", str(config), "text"]) == 0
    stamps = {i: (out / f"snippet-{i}.txt").stat().st_mtime_ns for i in range(3)}
    link = tmp_path / "venv-through-a-symlink" / "model"
    link.parent.mkdir()
    link.symlink_to(tiny_model, target_is_directory=True)
    config.write_text(config.read_text().replace(str(tiny_model), str(link)))

    def rerun_without(i: int) -> str:
        (out / f"snippet-{i}.txt").unlink()
        capsys.readouterr()
        assert main(["-c", str(config), "text"]) == 0
        return capsys.readouterr().err

    err = rerun_without(2)
    assert "other settings" not in err and "1 of 3 snippets to write" in err
    assert all((out / f"snippet-{i}.txt").stat().st_mtime_ns == stamps[i] for i in (0, 1))
    manifest = json.loads((out / "manifest.json").read_text())
    assert "earlier_settings" not in manifest and manifest["settings"]["stages"][0]["path"] == str(link)

    # A manifest as the old code wrote it in another venv: other model path and name, same files.
    stage = manifest["settings"]["stages"][0]
    stage.update(path="/old/venv/lib/python3.11/site-packages/model", model="/old/venv/model", name="model")
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert "other settings" not in rerun_without(1)

    # Other model files are another model.
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["settings"]["stages"][0]["sha256"]["config.json"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert "2 snippet(s) made with other settings are kept" in rerun_without(1)


def test_models_and_prompts_compare_by_content():
    from bakery.text.stage import text_shaping

    def settings(**stage):
        base = {"stage": "generate", "backend": "transformers", "model": "embedded", "name": "SmolLM2 (0.1.0)",
                "path": "/venv/site-packages/smollm2.gguf", "sha256": {"smollm2.gguf": "a" * 64},
                "prompt": "content/prompts/plot.txt", "prompt_sha256": "b" * 64, "top_k": 30,
                "batch_size": 4, "device": "cpu"}
        return {"pipeline": "prompted", "stages": [{**base, **stage}], "clean": {"min_chars": 80}}

    same = [settings(path="/link/site-packages/smollm2.gguf"), settings(name="SmolLM2 (0.2.0)"),
            settings(model="/models/renamed.gguf", sha256={"renamed.gguf": "a" * 64}),
            settings(prompt="/elsewhere/plot.txt"), settings(batch_size=36, device="cuda")]
    assert all(text_shaping(s) == text_shaping(settings()) for s in same)
    other = [settings(sha256={"smollm2.gguf": "c" * 64}), settings(prompt_sha256="d" * 64), settings(top_k=40)]
    assert all(text_shaping(s) != text_shaping(settings()) for s in other)
    # Without file hashes (an API model) the name is all there is: it is compared.
    api = {"backend": "openai", "model": "gpt-3.5-turbo-instruct", "base_url": "https://api.example/v1"}
    assert (text_shaping({"stages": [api]})
            != text_shaping({"stages": [{**api, "model": "davinci-002"}]}))


def test_failing_snippets_are_resampled_then_reported(tmp_path, tiny_model, capsys):
    # 24 random tokens never reach 5000 characters: every ID fails every attempt.
    config = write_project(tmp_path, tiny_toml(tiny_model, clean="min_chars = 5000\nmax_chars = 6000"),
                           seeds="0-1")
    assert main(["-q", "-c", str(config), "text"]) == 1
    err = capsys.readouterr().err
    assert "2 snippet(s) failed after 2 attempt(s)" in err and "ID 0: too short" in err
    manifest = json.loads((tmp_path / "build/text/manifest.json").read_text())
    assert len(manifest["failed"]["0"]) == 2 and not list((tmp_path / "build/text").glob("snippet-*"))


def test_missing_model_folder_is_one_clear_error(tmp_path, tiny_model, capsys):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    config = write_project(tmp_path, tiny_toml(empty))
    assert main(["-q", "-c", str(config), "text"]) == 1
    err = capsys.readouterr().err.strip()
    assert "text.generate.model: cannot load model" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_embedded_smollm2_writes_real_snippets(tmp_path):
    """The shipped default model, the shipped prompt: a few real, cleaned snippets, offline."""
    from bakery.text.backends.transformers_backend import embedded_model_file

    repo_prompt = Path(__file__).resolve().parents[1] / "content/prompts/plot.txt"
    config = write_project(tmp_path, """
[text.generate]
max_new_tokens = 90
batch_size = 3
[text.clean]
min_chars = 80
""", seeds="0-2", prompts={"plot.txt": repo_prompt.read_text(encoding="utf-8")})
    assert main(["-q", "-c", str(config), "text"]) == 0
    for i in range(3):
        text = (tmp_path / f"build/text/snippet-{i}.txt").read_text(encoding="utf-8").strip()
        assert len(text) >= 80 and "<|" not in text
        assert sum(ch.isalpha() for ch in text) > 0.6 * len(text)  # words, not token soup
    manifest = json.loads((tmp_path / "build/text/manifest.json").read_text())
    identity = manifest["settings"]["stages"][0]
    assert identity["name"].startswith("SmolLM2-135M-Instruct")
    assert identity["sha256"] == {embedded_model_file().name: identity["sha256"][embedded_model_file().name]}
