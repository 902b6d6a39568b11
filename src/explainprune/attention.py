"""Attention probabilities of chosen query rows at one decoder layer, computed by hand.

The model keeps its own attention implementation (sdpa, flash); only this small computation
(one layer's input norm, q/k projections, RoPE, causal + padding mask, softmax over all keys) is
done here, for a handful of query rows. It equals eager `output_attentions` of that layer.
"""

from __future__ import annotations

import torch

from .adapters import Adapter, EncodedBatch


def rotated_keys(adapter: Adapter, attention, normed: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(B, kv_heads, L, head_dim) keys of `attention` for its normed input, rotary embedding applied."""
    batch, length, _ = normed.shape
    key = attention.k_proj(normed).view(batch, length, -1, attention.head_dim).transpose(1, 2)
    return adapter.apply_rotary(key, key, cos, sin)[0]


def layer_keys(adapter: Adapter, layer_index: int, hidden_states: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """(B, kv_heads, L, head_dim) rotated keys of decoder layer `layer_index` from its input hidden states."""
    language_model = adapter.language_model
    layer = language_model.layers[layer_index]
    normed = layer.input_layernorm(hidden_states)
    cos, sin = language_model.rotary_emb(normed, position_ids)
    return rotated_keys(adapter, layer.self_attn, normed, cos, sin)


def attention_rows(
    adapter: Adapter,
    layer_index: int,
    hidden_states: torch.Tensor,
    position_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    rows: list[torch.Tensor],
) -> list[torch.Tensor]:
    """Per sample, attention of `rows[b]` (query positions) over all keys: (heads, len(rows[b]), L).

    `hidden_states` is the input of layer `layer_index` (for layer 0: the input embeddings).
    """
    language_model = adapter.language_model
    layer = language_model.layers[layer_index]
    attention = layer.self_attn
    head_dim = attention.head_dim
    normed = layer.input_layernorm(hidden_states)
    cos, sin = language_model.rotary_emb(normed, position_ids)
    length = hidden_states.shape[1]
    key_index = torch.arange(length, device=hidden_states.device)
    results = []
    for sample, sample_rows in enumerate(rows):
        sample_rows = sample_rows.to(hidden_states.device)
        x = normed[sample : sample + 1]
        query = attention.q_proj(x[:, sample_rows]).view(1, len(sample_rows), -1, head_dim).transpose(1, 2)
        query, _ = adapter.apply_rotary(query, query, cos[sample : sample + 1, sample_rows], sin[sample : sample + 1, sample_rows])
        key = rotated_keys(adapter, attention, x, cos[sample : sample + 1], sin[sample : sample + 1])
        key = key.repeat_interleave(attention.num_key_value_groups, dim=1)
        scores = torch.matmul(query, key.transpose(2, 3)) * attention.scaling
        allowed = (key_index[None, :] <= sample_rows[:, None]) & attention_mask[sample].bool()[None, :]
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        results.append(torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)[0])
    return results


def instruction_attention(adapter: Adapter, encoded: EncodedBatch, layer_index: int = 0) -> list[torch.Tensor | None]:
    """Per sample, layer-`layer_index` attention per head averaged over the instruction rows: (heads, L).

    Only valid for layer 0 with `encoded.inputs_embeds`; None for a sample without instruction rows.
    """
    rows = [encoded.instruction_rows(b) for b in range(encoded.batch_size)]
    present = [b for b in range(encoded.batch_size) if rows[b].numel()]
    maps: list[torch.Tensor | None] = [None] * encoded.batch_size
    if not present:
        return maps
    probs = attention_rows(
        adapter, layer_index, encoded.inputs_embeds, encoded.position_ids, encoded.attention_mask, rows
    )
    for b in present:
        maps[b] = probs[b].float().mean(dim=1)
    return maps
