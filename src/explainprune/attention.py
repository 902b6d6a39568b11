"""Attention probabilities of chosen query rows at one decoder layer, computed by hand.

The model keeps its own attention implementation (sdpa, flash); only this small computation
(one layer's input norm, q/k projections, RoPE, causal + padding mask, softmax over all keys) is
done here, for a handful of query rows. It equals eager `output_attentions` of that layer.
"""

from __future__ import annotations

import torch

from .adapters import Adapter, EncodedBatch
from .errors import InputMismatchError


def attention_rows(
    adapter: Adapter,
    layer_index: int,
    hidden_states: torch.Tensor,
    position_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    rows: list[torch.Tensor],
) -> list[torch.Tensor]:
    """Per sample, attention of `rows[b]` (query positions) over all keys: (heads, len(rows[b]), L).

    `hidden_states` is the input of layer `layer_index` (for layer 0: the input embeddings); the
    queries and keys come from `adapter.attention_inputs`.
    """
    results = []
    for sample, sample_rows in enumerate(rows):
        sample_rows = sample_rows.to(hidden_states.device)
        positions = position_ids[:, sample : sample + 1] if position_ids.ndim == 3 else position_ids[sample : sample + 1]
        query, key, scaling = adapter.attention_inputs(
            layer_index, hidden_states[sample : sample + 1], positions, sample_rows
        )
        results.append(row_attention(query, key, scaling, sample_rows, attention_mask[sample])[0])
    return results


def row_attention(
    query: torch.Tensor, key: torch.Tensor, scaling: float, rows: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """softmax(q k^T * scaling) of the query `rows` over the keys they may see (causal, not padding):
    (1, heads, R, L), zero on keys they may not see."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    key_index = torch.arange(key.shape[2], device=key.device)
    allowed = (key_index[None, :] <= rows[:, None]) & attention_mask.to(key.device).bool()[None, :]
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)


def instruction_attention_rows(
    adapter: Adapter, encoded: EncodedBatch, layer_index: int = 0
) -> list[torch.Tensor | None]:
    """Per sample, layer-`layer_index` attention per head of each instruction row: (heads, rows, L).

    Only valid for layer 0 with `encoded.inputs_embeds`; None for a sample without visual tokens
    (text only). A sample whose images have no text after them has no instruction rows: refused.
    """
    rows = [encoded.instruction_rows(b) for b in range(encoded.batch_size)]
    for b, spans in enumerate(encoded.spans):
        if spans and not rows[b].numel():
            raise InputMismatchError(
                f"sample {b} has no text after its last image or video: its visual tokens are scored by the "
                "attention of the question that follows them; put the question after the image (or use "
                "scorer='uniform')"
            )
    present = [b for b in range(encoded.batch_size) if encoded.spans[b]]
    maps: list[torch.Tensor | None] = [None] * encoded.batch_size
    if not present:
        return maps
    index = torch.tensor(present, device=encoded.inputs_embeds.device)
    probs = attention_rows(
        adapter,
        layer_index,
        encoded.inputs_embeds[index],
        encoded.position_ids[..., index, :],
        encoded.attention_mask[index],
        [rows[b] for b in present],
    )
    for b, sample_probs in zip(present, probs):
        maps[b] = sample_probs.float()
    return maps

