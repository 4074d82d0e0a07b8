"""The model cache: a GGUF file converted once, stored as safetensors, verified and reused."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from bakery.config import load_config
from bakery.cpus import usable_cpus
from bakery.errors import ConfigError
from bakery.text.backends import Request
from bakery.text.weights_cache import RECORD_NAME, entry_key, load_cached, verify_entry
from text_support import build_tiny_gguf, write_project


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return build_tiny_gguf(tmp_path_factory.mktemp("tiny-gguf"))


def stage_for(tmp_path, model: Path, **changes):
    config = write_project(tmp_path, f"""
[text.generate]
model = "{model}"
chat = false
max_new_tokens = 24
""")
    return dataclasses.replace(load_config(config).text.stages[0], **changes)


def backend(model, cache_dir):
    from bakery.text.backends.transformers_backend import TransformersBackend

    return TransformersBackend(model, "cpu", cache_dir=cache_dir)


def entries(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if not p.name.startswith(".")]


def test_cached_model_writes_the_same_snippets(tmp_path, tiny_gguf):
    cache = tmp_path / "cache"
    stage = stage_for(tmp_path, tiny_gguf, batch_size=3)
    requests = [Request("Plot:", 5), Request("The summer festival hides a shrine", 6), Request("Idol:", 7)]
    uncached = backend(tiny_gguf, None).generate(requests, stage)
    assert not cache.exists()
    first = backend(tiny_gguf, cache)  # converts the GGUF and fills the cache
    (entry,) = entries(cache)
    assert (entry / "model.safetensors").is_file() and verify_entry(entry) is None
    record = json.loads((entry / RECORD_NAME).read_text())
    assert record["source_sha256"] == first.file_sha256 and record["dtype"] == "torch.float32"
    second = backend(tiny_gguf, cache)  # loads the safetensors
    assert first.generate(requests, stage) == second.generate(requests, stage) == uncached
    for name, tensor in second.model.state_dict().items():
        assert torch.equal(tensor, first.model.state_dict()[name]), name
    assert second.identity()["sha256"] == {tiny_gguf.name: first.file_sha256}


def test_second_load_does_not_convert_again(tmp_path, tiny_gguf):
    cache, calls = tmp_path / "cache", []
    key = entry_key("ab" * 32, torch.float32)
    from bakery.text.backends.transformers_backend import from_pretrained

    def build():
        calls.append("build")
        return from_pretrained(tiny_gguf.parent, torch.float32, {"gguf_file": tiny_gguf.name})

    def load(folder):
        calls.append("load")
        return from_pretrained(folder, torch.float32, {})

    load_cached(cache, key, {}, build, load)
    load_cached(cache, key, {}, build, load)
    assert calls == ["build", "load"]
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]  # the temp folder was renamed


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "record"])
def test_damaged_entry_is_rebuilt_not_trusted(tmp_path, tiny_gguf, damage):
    cache = tmp_path / "cache"
    stage = stage_for(tmp_path, tiny_gguf)
    want = backend(tiny_gguf, cache).generate([Request("Plot:", 3)], stage)
    (entry,) = entries(cache)
    weights = entry / "model.safetensors"
    original = weights.read_bytes()
    data = bytearray(original)
    if damage == "flip":  # same size, one weight altered: only the hash can tell
        data[-5] ^= 0x40
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "delete":
        weights.unlink()
    else:
        (entry / RECORD_NAME).write_text("{not json")
    assert verify_entry(entry) is not None
    again = backend(tiny_gguf, cache)
    assert verify_entry(entry) is None and weights.read_bytes() == original  # rebuilt from the GGUF
    assert again.generate([Request("Plot:", 3)], stage) == want


@pytest.mark.parametrize("tamper", ["extra", "swapped", "linked_file", "linked_folder", "writable_folder",
                                    "writable_file", "subfolder"])
def test_a_tampered_entry_is_refused_and_rebuilt(tmp_path, tiny_gguf, tamper):
    """What entry.json cannot vouch for: unlisted files, weights swapped together with a
    rewritten entry.json (the folder's name is the record's hash), links, files others may
    write. Each is refused, removed without following a link, and rebuilt from the GGUF."""
    from bakery.text.weights_cache import RECORD_NAME, file_records

    cache = tmp_path / "cache"
    stage = stage_for(tmp_path, tiny_gguf)
    want = backend(tiny_gguf, cache).generate([Request("Plot:", 3)], stage)
    (entry,) = entries(cache)
    weights = entry / "model.safetensors"
    original = weights.read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if tamper == "extra":  # an unlisted file (a loader may pick up more than the listed ones)
        (entry / "tokenizer_extra.py").write_text("print('hi')\n")
    elif tamper == "swapped":  # other weights, and a record rewritten to vouch for them
        data = bytearray(original)
        data[-5] ^= 0x40
        weights.write_bytes(bytes(data))
        record = json.loads((entry / RECORD_NAME).read_text())
        record["files"] = file_records(entry)
        (entry / RECORD_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    elif tamper == "linked_file":  # the same bytes, but through a link to a file elsewhere
        (elsewhere / "model.safetensors").write_bytes(original)
        weights.unlink()
        weights.symlink_to(elsewhere / "model.safetensors")
    elif tamper == "linked_folder":  # the entry's name is a link to a folder elsewhere
        moved = elsewhere / "entry"
        entry.rename(moved)
        entry.symlink_to(moved, target_is_directory=True)
    elif tamper == "writable_folder":
        entry.chmod(0o777)
    elif tamper == "writable_file":
        weights.chmod(0o666)
    else:
        (entry / "sub").mkdir()
    assert verify_entry(entry) is not None
    again = backend(tiny_gguf, cache)
    assert entries(cache) == [entry] and not entry.is_symlink()
    assert verify_entry(entry) is None and weights.read_bytes() == original  # rebuilt from the GGUF
    listed = set(json.loads((entry / RECORD_NAME).read_text())["files"]) | {RECORD_NAME}
    assert {p.name for p in entry.iterdir()} == listed  # the extra file and folder went with the old entry
    assert again.generate([Request("Plot:", 3)], stage) == want
    if tamper in ("linked_file", "linked_folder"):  # the link went, not what it pointed to
        assert (elsewhere / ("model.safetensors" if tamper == "linked_file" else "entry/model.safetensors")).is_file()


def test_the_record_is_keyed_by_the_folder_name(tmp_path, tiny_gguf):
    from bakery.text.weights_cache import RECORD_NAME

    cache = tmp_path / "cache"
    backend(tiny_gguf, cache)
    (entry,) = entries(cache)
    key, digest = entry.name.rsplit(".", 1)
    assert key == entry_key(json.loads((entry / RECORD_NAME).read_text())["source_sha256"], torch.float32)
    assert len(digest) == 32 and verify_entry(entry) is None
    renamed = entry.with_name(f"{key}.{'0' * 32}")  # the same entry under a name it does not hash to
    entry.rename(renamed)
    assert "does not match the folder's name" in verify_entry(renamed)
    assert oct(cache.stat().st_mode & 0o777) == "0o700"  # a new root is private


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_cache_root_others_can_write_is_refused(tmp_path, tiny_gguf, mode):
    from bakery.errors import BakeryError

    cache = tmp_path / "shared-cache"
    cache.mkdir()
    cache.chmod(mode)
    with pytest.raises(BakeryError) as caught:
        backend(tiny_gguf, cache)
    line = str(caught.value)
    assert line.startswith(f"text.model_cache: {cache} is writable by other users (mode {mode:o}") and "\n" not in line
    assert "chmod go-w" in line and list(cache.iterdir()) == []  # nothing read, nothing written
    cache.chmod(0o755)
    backend(tiny_gguf, cache)  # a private root is used
    assert len(entries(cache)) == 1


def test_key_follows_source_dtype_and_versions():
    base = entry_key("ab" * 32, torch.float32, {"transformers": "5.25.0", "torch": "2.13.0"})
    assert base.startswith("ab" * 8)
    assert base == entry_key("ab" * 32, torch.float32, {"transformers": "5.25.0", "torch": "2.13.0"})
    assert base != entry_key("cd" * 32, torch.float32, {"transformers": "5.25.0", "torch": "2.13.0"})
    assert base != entry_key("ab" * 32, torch.bfloat16, {"transformers": "5.25.0", "torch": "2.13.0"})
    assert base != entry_key("ab" * 32, torch.float32, {"transformers": "5.26.0", "torch": "2.13.0"})
    assert base != entry_key("ab" * 32, torch.float32, {"transformers": "5.25.0", "torch": "2.14.0"})


def test_a_killed_writers_leftover_is_removed(tmp_path, tiny_gguf):
    cache = tmp_path / "cache"
    stale = cache / ".tmp-dead-writer.x"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    os.utime(stale, (0, 0))
    backend(tiny_gguf, cache)
    assert not stale.exists() and len(entries(cache)) == 1


def test_model_cache_config(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert load_config(write_project(tmp_path, "")).text.model_cache == tmp_path / "xdg/bakery/models"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert load_config(write_project(tmp_path, "")).text.model_cache == tmp_path / "home/.cache/bakery/models"
    off = load_config(write_project(tmp_path, "[text]\nmodel_cache = false\n")).text
    assert off.model_cache is None
    here = load_config(write_project(tmp_path, '[text]\nmodel_cache = "build/models"\n')).text
    assert here.model_cache == tmp_path / "build/models"
    with pytest.raises(ConfigError, match="text.model_cache: must be a folder path, true or false"):
        load_config(write_project(tmp_path, "[text]\nmodel_cache = 3\n")).text


def test_bakery_text_fills_the_configured_cache(tmp_path, tiny_gguf):
    from bakery.cli import main

    config = write_project(tmp_path, f"""
[text]
max_attempts = 1
model_cache = "{tmp_path / 'models'}"
[text.generate]
model = "{tiny_gguf}"
chat = false
max_new_tokens = 24
[text.clean]
min_chars = 1
max_repeat_fraction = 1.0
""", seeds="0-2")
    main(["-q", "-c", str(config), "text"])
    (entry,) = entries(tmp_path / "models")
    assert verify_entry(entry) is None


def test_shared_prompt_pass_equals_the_batched_one(tmp_path, tiny_gguf):
    """Each distinct prompt computed once into a preallocated cache (prefill.py) gives the
    tokens of one batched, left-padded prompt pass with transformers' own cache."""
    from bakery.text.backends import prefill
    from bakery.text.backends.transformers_backend import sample

    llama = backend(tiny_gguf, None)
    prompts = ["Plot:", "The summer festival hides a shrine", "Plot:", "Idol:", "Plot:"]
    enc = llama.tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():  # the shared path applies to this model
        assert prefill.shared_prefill(llama.model, enc.input_ids, enc.attention_mask, 4, {})
    for temperature in (0.0, 0.7):
        stage = stage_for(tmp_path, tiny_gguf, temperature=temperature, max_new_tokens=20)

        def run():
            return sample(llama.model, enc.input_ids, enc.attention_mask,
                          [torch.Generator().manual_seed(10 + i) for i in range(len(prompts))],
                          stage, llama.stop_ids, llama.pad_id)

        shared = run()
        original = prefill.shared_prefill
        prefill.shared_prefill = lambda *args: None  # the batched fallback
        try:
            batched = run()
        finally:
            prefill.shared_prefill = original
        assert shared == batched and all(len(row) == 20 for row in shared)


def test_threads_config(tmp_path):
    assert load_config(write_project(tmp_path, "")).text.threads == max(1, usable_cpus() // 2)
    assert load_config(write_project(tmp_path, "[text]\nthreads = 3\n")).text.threads == 3
    with pytest.raises(ConfigError, match="text.threads"):
        load_config(write_project(tmp_path, "[text]\nthreads = -1\n")).text


def test_two_writers_of_one_key_keep_the_first(tmp_path):
    """Another process finishes the same entry while this one writes: its copy stays, ours goes."""
    from bakery.text.weights_cache import write_entry

    def save(folder):
        (folder / "model.safetensors").write_text("the same conversion")

    def racing_save(folder):
        theirs.append(write_entry(tmp_path, "key", save, {}))  # finishes first
        os.utime(theirs[0] / "model.safetensors", (1, 1))  # to tell their copy from ours
        save(folder)

    theirs = []
    final = write_entry(tmp_path, "key", racing_save, {})
    assert final == theirs[0] and final.name.startswith("key.") and verify_entry(final) is None
    assert (final / "model.safetensors").stat().st_mtime == 1
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def plain_transformers_load(gguf_path: Path):
    """transformers' own GGUF loader, untouched: the reference for parse_once()."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, local_files_only=True,
                                                 dtype=torch.float32)
    return tokenizer, model


def assert_same_load(ours, plain):
    (tok_a, model_a), (tok_b, model_b) = ours, plain
    a, b = model_a.state_dict(), model_b.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
    assert model_a.config.to_dict() == model_b.config.to_dict()
    assert tok_a.backend_tokenizer.to_str() == tok_b.backend_tokenizer.to_str()
    assert tok_a.chat_template == tok_b.chat_template and tok_a.special_tokens_map == tok_b.special_tokens_map


def test_gguf_parsed_once_gives_transformers_own_result(tmp_path, tiny_gguf, monkeypatch):
    """One GGUFReader for config, tokenizer and weights: every tensor, the config, the tokenizer
    and the snippets equal those of transformers' plain loader."""
    import gguf

    from bakery.text.backends.transformers_backend import from_pretrained

    built, original_reader, original_map = [], gguf.GGUFReader, gguf.get_tensor_name_map

    class CountingReader(original_reader):
        def __init__(self, *args, **kwargs):
            built.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    plain = plain_transformers_load(tiny_gguf)
    plain_readers = len(built)
    built.clear()
    ours = from_pretrained(tiny_gguf.parent, torch.float32, {"gguf_file": tiny_gguf.name})
    assert plain_readers > 1 and len(built) == 1  # the file is parsed once instead
    assert gguf.GGUFReader is CountingReader and gguf.get_tensor_name_map is original_map  # restored
    assert_same_load(ours, plain)
    stage = stage_for(tmp_path, tiny_gguf, batch_size=2)
    requests = [Request("Plot:", 5), Request("The summer festival hides a shrine", 6)]
    llama = backend(tiny_gguf, None)
    want = llama.generate(requests, stage)
    pad_token = llama.tokenizer.pad_token
    llama.tokenizer, llama.model = plain  # the same backend on transformers' plain load
    llama.tokenizer.padding_side, llama.tokenizer.pad_token = "left", pad_token
    assert llama.generate(requests, stage) == want


def test_gguf_parse_once_restores_gguf_after_an_error(tmp_path):
    import gguf

    from bakery.text.gguf_once import parse_once

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with pytest.raises(RuntimeError), parse_once():
        raise RuntimeError("conversion failed")
    assert gguf.GGUFReader is reader and gguf.get_tensor_name_map is name_map


@pytest.mark.slow
def test_embedded_smollm2_parsed_once_equals_transformers_loader():
    from bakery.text.backends.transformers_backend import embedded_model_file, from_pretrained

    path = embedded_model_file()
    ours = from_pretrained(path.parent, torch.float32, {"gguf_file": path.name})
    assert_same_load(ours, plain_transformers_load(path))


def test_bakery_text_with_a_shared_cache_root_is_one_line(tmp_path, tiny_gguf, capsys):
    from bakery.cli import main

    shared = tmp_path / "models"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    config = write_project(tmp_path, f"""
[text]
model_cache = "{shared}"
[text.generate]
model = "{tiny_gguf}"
chat = false
""", seeds="0-2")
    assert main(["-q", "-c", str(config), "text"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bakery: error: text.model_cache: {shared} is writable by other users (mode 777, owner uid "
                   f"{os.getuid()}): refusing to load models from it; `chmod go-w {shared}` (if it is yours), "
                   "or set [text] model_cache to a folder of your own or to false"], err
    assert not list((tmp_path / "build").glob("text/snippet-*.txt"))
