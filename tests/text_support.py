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


def build_tiny_gguf(folder: Path) -> Path:
    """A randomly initialised 2-layer Llama with the tiny BPE tokenizer, written as a float32
    GGUF file (as llama.cpp's converter lays it out), so the GGUF path runs in a second."""
    import json

    import gguf
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = json.loads((build_tiny_gpt2(folder / "tokenizer-source") / "tokenizer.json").read_text())
    tokens = sorted(tok["model"]["vocab"], key=tok["model"]["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    special = {a["id"] for a in tok["added_tokens"]}
    heads, kv_heads, layers = 4, 2, 2
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=256,
        tie_word_embeddings=True))
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}

    def permute(x, n):  # llama.cpp's rotary layout for q and k
        return x.reshape(n, 2, x.shape[0] // n // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)

    path = folder / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(256)
    w.add_embedding_length(32)
    w.add_block_count(layers)
    w.add_feed_forward_length(64)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_token_types([3 if i in special else 1 for i in range(len(tokens))])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    for i in range(layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", permute(sd[p + "self_attn.q_proj.weight"], heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", permute(sd[p + "self_attn.k_proj.weight"], kv_heads))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
