"""Analytical FLOPs of an LLM prefill (2 FLOPs per multiply-add)."""

from __future__ import annotations


def prefill_flops(text_config, layer_lengths: list[int]) -> int:
    """FLOPs of a prefill whose decoder layer i sees `layer_lengths[i]` tokens (batch 1).

    Counts the attention projections (q, k, v, o), the causal attention scores and weighted sum
    (L(L+1)/2 query-key pairs), the gated MLP (gate, up, down) and the lm_head of the last token.
    Norms, RoPE, softmax and activations are left out (they are O(L * hidden)).
    """
    hidden = text_config.hidden_size
    heads, kv_heads = text_config.num_attention_heads, text_config.num_key_value_heads
    head_dim = getattr(text_config, "head_dim", None) or hidden // heads
    projections = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    mlp = 3 * hidden * text_config.intermediate_size
    total = 0
    for length in layer_lengths:
        pairs = length * (length + 1) // 2
        total += 2 * length * (projections + mlp) + 2 * 2 * heads * head_dim * pairs
    return total + 2 * hidden * text_config.vocab_size
