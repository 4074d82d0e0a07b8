"""Helpers shared by the text-stage tests: a small project in a temporary folder."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_project(root: Path, text_toml: str, seeds: str = "0-3", prompts: dict[str, str] | None = None) -> Path:
    """root/content/site.toml with the given [text...] tables; returns the config path."""
    content = root / "content"
    (content / "prompts").mkdir(parents=True, exist_ok=True)
    for name, body in (prompts or {"plot.txt": "A new anime series begins. Plot summary:"}).items():
        (content / "prompts" / name).write_text(body, encoding="utf-8")
    config = content / "site.toml"
    config.write_text(f"""
[site]
templates_dir = "{REPO / 'templates'}"
static_dir = "{REPO / 'static'}"

[images]
[[images.bands]]
seeds = "{seeds}"
psi = 0.7

{text_toml}
""", encoding="utf-8")
    return config


CORPUS = [
    "In the first episode, the heroine joins the school club and meets a talking cat.",
    "A mecha pilot returns to the space colony where her brother vanished.",
    "The summer festival hides a shrine that grants one wish to whoever finds it.",
    "An idol group must win the tournament or the academy will be closed forever.",
] * 4


def build_tiny_gpt2(folder: Path) -> Path:
    """A randomly initialised 2-layer GPT-2 and a byte-level BPE tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>",
                                        bos_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=bpe.get_vocab_size(), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def tiny_toml(model: Path, extra: str = "", clean: str = "min_chars = 20") -> str:
    return f"""
[text]
max_attempts = 2
[text.generate]
model = "{model}"
chat = false
batch_size = 3
max_new_tokens = 24
{extra}
[text.clean]
{clean}
max_repeat_fraction = 1.0
"""
