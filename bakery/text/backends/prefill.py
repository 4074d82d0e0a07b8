"""The prompt pass of the sampler: each distinct prompt once, into a cache with room to grow.

Profiled on the shipped config (36 IDs, one prompt of about 110 tokens, 100 new tokens,
2-core CPU), two costs stood out besides the decode steps' matrix products:

- The prompt pass ran every row's copy of the same prompt: 36 × 110 tokens through the
  model, about as much arithmetic as 40 decode steps of the whole batch. The shipped prompt
  is the same text for every ID, so it is computed once, alone, and every row that has it
  shares its keys and values. A row's prompt is then computed the same way whatever else
  is in its batch (it no longer depends on the padding of other rows either).
- transformers' DynamicCache concatenates each new token onto the whole cache, copying it
  at every step of every layer (about 8 % of the decode time at batch 12). The cache
  here is allocated once with room for every new token and each step writes its token in
  place.

Both keep transformers' own forward pass (every architecture it supports), and only apply
to a cache made of plain full-attention layers; for anything else (sliding windows, a
model with its own cache type) the sampler falls back to one batched prompt pass.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer


class PreallocatedLayer(DynamicLayer):
    """A full-attention cache layer in buffers of [batch, heads, capacity, head_dim]: the
    keys and values seen by attention are views of the first `length` positions."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self.buffers = (keys, values)
        self.length = length
        self.device = keys.device
        self.is_initialized = True
        self._view()

    def _view(self) -> None:
        self.keys = self.buffers[0][:, :, :self.length]
        self.values = self.buffers[1][:, :, :self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        if end > self.buffers[0].shape[2]:  # out of room (never in the sampler): grow like DynamicLayer
            self.buffers = tuple(torch.cat([b[:, :, :self.length], s], dim=-2)
                                 for b, s in zip(self.buffers, (key_states, value_states)))
        else:
            self.buffers[0][:, :, self.length:end] = key_states
            self.buffers[1][:, :, self.length:end] = value_states
        self.length = end
        self._view()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.buffers = tuple(b.index_select(0, indices.to(b.device)) for b in self.buffers)
        self._view()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("the sampler never crops its cache")


def shared_prefill(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, room: int, extra: dict):
    """(last-position logits per row, cache) for a left-padded batch, computing each distinct
    prompt once; None when the model's cache is not made of plain full-attention layers."""
    if not isinstance(model, PreTrainedModel):
        return None
    rows = [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask)]
    if not all(rows):
        return None
    done: dict[tuple, tuple] = {}
    for prompt in rows:
        if prompt in done:
            continue
        ids = torch.tensor([prompt], device=input_ids.device)
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                    position_ids=torch.arange(len(prompt), device=ids.device)[None], use_cache=True, **extra)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if not isinstance(cache, DynamicCache) or any(type(layer) is not DynamicLayer for layer in cache.layers):
            return None
        done[prompt] = (out.logits[0, -1], [(layer.keys, layer.values) for layer in cache.layers])
    width = input_ids.shape[1]  # every row's prompt ends here: left padding, as input_ids
    cache = DynamicCache()
    cache.layers = [assemble(rows, done, index, width, room) for index in range(len(cache_layers(done)))]
    logits = torch.stack([done[prompt][0] for prompt in rows])
    return logits, cache


def cache_layers(done: dict) -> list:
    return next(iter(done.values()))[1]


def assemble(rows: list[tuple], done: dict, index: int, width: int, room: int) -> PreallocatedLayer:
    """Layer `index` of the batch's cache: each row's prompt keys/values right-aligned at
    `width` (the padding in front is masked out by attention_mask), `room` free positions after."""
    k0, _ = cache_layers(done)[index]
    shape = (len(rows), k0.shape[1], width + room, k0.shape[3])
    keys, values = k0.new_zeros(shape), k0.new_zeros(shape)
    for row, prompt in enumerate(rows):
        k, v = done[prompt][1][index]
        keys[row, :, width - len(prompt):width] = k[0]
        values[row, :, width - len(prompt):width] = v[0]
    return PreallocatedLayer(keys, values, width)
