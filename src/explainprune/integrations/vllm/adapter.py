"""The `Adapter` our scorers see inside vLLM: layer attention from vLLM's own decoder modules.

Scorers only ask an adapter for `attention_inputs` (layer0, learned), `fingerprint` and `model`
(learned); this one answers from vLLM's Qwen2 decoder (fused qkv projection, its M-RoPE module).
Under tensor parallelism each rank holds a slice of the heads: queries and keys are all-gathered
over the tensor-parallel group, so every rank scores with every head (see docs/vllm.md).
"""

from __future__ import annotations

import torch
from vllm.distributed import get_tensor_model_parallel_world_size, tensor_model_parallel_all_gather

from ...adapters import Adapter


def gather_heads(local: torch.Tensor, total_heads: int) -> torch.Tensor:
    """(tokens, heads_on_this_rank, d) -> (tokens, total_heads, d) over the tensor-parallel group.

    vLLM shards heads contiguously by rank; key/value heads are replicated when there are fewer than
    ranks, and then each is kept once.
    """
    world = get_tensor_model_parallel_world_size()
    if world == 1:
        return local
    gathered = tensor_model_parallel_all_gather(local.contiguous(), dim=1)
    return gathered[:, :: max(1, gathered.shape[1] // total_heads)]


class VllmAdapter(Adapter):
    """An adapter over a vLLM Qwen2-VL / Qwen2.5-VL model (`family` set per model class)."""

    def __init__(self, model, family: str):
        super().__init__(model)
        self.family = family

    def attention_inputs(self, layer_index, hidden_states, position_ids, rows):
        layer = self.model.language_model.model.layers[layer_index]
        attention = layer.self_attn
        config = self.config.get_text_config()
        hidden = hidden_states[0]
        positions = position_ids[:, 0] if position_ids.ndim == 3 else position_ids[0]
        qkv, _ = attention.qkv_proj(layer.input_layernorm(hidden))
        query, key, _ = qkv.split([attention.q_size, attention.kv_size, attention.kv_size], dim=-1)
        query, key = attention.rotary_emb(positions, query, key)
        head_dim = attention.head_dim
        query = gather_heads(query.view(len(hidden), -1, head_dim), config.num_attention_heads)
        key = gather_heads(key.reshape(len(hidden), -1, head_dim), config.num_key_value_heads)
        key = key.repeat_interleave(query.shape[1] // key.shape[1], dim=1)
        return query[rows].transpose(0, 1)[None], key.transpose(0, 1)[None], attention.scaling
