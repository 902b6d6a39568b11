"""`InLLMPruner`: pruning inside the LLM, at the input of decoder layer K (FastV, DART).

Layers < K run on the full sequence. At layer K the pruner's `choose` sees the batch with layer K's
input hidden states in place of the input embeddings and picks, per image, the usual per-span budget
(structural tokens always kept); only those tokens continue through layers K..N-1. Decoding is greedy
with a KV cache whose layers < K hold the full sequence and layers >= K the pruned one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from transformers import DynamicCache
from transformers.masking_utils import create_causal_mask

from ..adapters import Adapter, EncodedBatch
from ..errors import ExplainPruneError
from ..prune import gather_batch, with_replacements
from ..selection import Choice, check_choices, kept_positions, span_budgets

SUPPORTED_GENERATE_OPTIONS = ("max_new_tokens", "eos_token_id", "pad_token_id", "do_sample", "num_beams")


def last_real_rows(attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """Per sample, the position of its last real token, as a 1-element tensor."""
    return [mask.bool().nonzero().max().reshape(1).cpu() for mask in attention_mask]


def next_positions(position_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) position id of each sample's next token: one past its largest real position."""
    positions = position_ids.amax(0) if position_ids.ndim == 3 else position_ids
    return positions.masked_fill(attention_mask == 0, 0).amax(-1) + 1


def step_position_ids(next_position: torch.Tensor, mrope: bool) -> torch.Tensor:
    """Position ids of one new (text) token per sample: (B, 1), or (3, B, 1) for M-RoPE."""
    position_ids = next_position[:, None]
    return position_ids[None].expand(3, -1, -1) if mrope else position_ids


def layer_mask(language_model, hidden: torch.Tensor, key_mask: torch.Tensor, cache, first_layer: int):
    """The attention mask of decoder layers from `first_layer` on, in the form the model's attention
    implementation takes (sdpa, eager, flash...), built by transformers' `create_causal_mask` as the
    model's own forward builds it: causal, padding keys of `key_mask` (B, past + Q) masked, sized
    against the cache of `first_layer` (layers < K and >= K hold different lengths)."""
    return create_causal_mask(
        config=language_model.config,
        inputs_embeds=hidden,
        attention_mask=key_mask,
        past_key_values=cache,
        layer_idx=first_layer,
    )


@dataclass
class PrefillState:
    """The decoding state after the prefill: cache, next-token logits, masks and next positions."""

    cache: DynamicCache
    logits: torch.Tensor  # (B, vocab) of the last real token
    early_mask: torch.Tensor  # (B, L) key mask of layers < K
    late_mask: torch.Tensor  # (B, L') key mask of layers >= K
    next_position: torch.Tensor  # (B,) position id of the next token
    mrope: bool  # positions are (3, B, L) (Qwen's M-RoPE), else (B, L)
    kept: list[torch.Tensor]  # per sample, the positions that reached layers >= K


class InLLMPruner:
    """Prunes visual tokens at the input of decoder layer `layer`; subclasses implement `choose`."""

    name: str = ""

    def __init__(self, layer: int = 2):
        if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
            raise ExplainPruneError(f"{self.name} option layer must be a layer index >= 0, got {layer!r}")
        self.layer = layer

    def choose(self, adapter: Adapter, encoded: EncodedBatch, budgets: list[list[int]]) -> list[list[Choice]]:
        """Per sample, per span, the tokens to keep; `encoded.inputs_embeds` is layer K's input."""
        raise NotImplementedError

    def _check_depth(self, language_model) -> None:
        config = language_model.config
        if self.layer >= config.num_hidden_layers:
            raise ExplainPruneError(
                f"{self.name} layer {self.layer} does not exist: the language model has {config.num_hidden_layers} layers"
            )
        layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
        if layer_types != {"full_attention"}:
            raise ExplainPruneError(f"{self.name} supports full-attention layers only, the model has {sorted(layer_types)}")

    def run_layers(self, language_model, layers: range, hidden, position_ids, key_mask, cache) -> torch.Tensor:
        """Run decoder `layers` on `hidden` (the last tokens of `key_mask`), appending to `cache`."""
        position_embeddings = language_model.rotary_emb(hidden, position_ids)
        mask = layer_mask(language_model, hidden, key_mask, cache, layers.start)
        for index in layers:
            hidden = language_model.layers[index](
                hidden,
                attention_mask=mask,
                position_embeddings=position_embeddings,
                past_key_values=cache,
                use_cache=True,
            )
        return hidden

    def early_layers(self, adapter: Adapter, encoded: EncodedBatch, cache) -> torch.Tensor:
        """Layer K's input: layers < K run on the full sequence."""
        language_model = adapter.language_model
        self._check_depth(language_model)
        return self.run_layers(
            language_model,
            range(self.layer),
            encoded.inputs_embeds,
            encoded.position_ids,
            encoded.attention_mask,
            cache,
        )

    @staticmethod
    def next_token_logits(adapter: Adapter, last_hidden: torch.Tensor) -> torch.Tensor:
        """(B, vocab) logits from the (B, D) last layer outputs of each sample's last token."""
        return adapter.model.get_output_embeddings()(adapter.language_model.norm(last_hidden)).float()

    @torch.no_grad()
    def prefill(self, adapter: Adapter, encoded: EncodedBatch, keep_ratio: float) -> PrefillState:
        """Full prefill: layers < K on every token, layers >= K on the kept ones."""
        language_model = adapter.language_model
        cache = DynamicCache(config=language_model.config)
        hidden = self.early_layers(adapter, encoded, cache)
        at_layer = replace(encoded, inputs_embeds=hidden)
        budgets = span_budgets(at_layer, keep_ratio)
        if keep_ratio >= 1.0 or not any(encoded.spans):
            choices = [[Choice(torch.arange(span.num_tokens)) for span in spans] for spans in at_layer.spans]
        else:
            choices = self.choose(adapter, at_layer, budgets)
            check_choices(at_layer, choices, budgets)
        kept = kept_positions(at_layer, choices)
        pruned = gather_batch(with_replacements(at_layer, choices), kept)
        hidden = self.run_layers(
            language_model,
            range(self.layer, language_model.config.num_hidden_layers),
            pruned["inputs_embeds"],
            pruned["position_ids"],
            pruned["attention_mask"],
            cache,
        )
        last_rows = last_real_rows(pruned["attention_mask"])
        return PrefillState(
            cache=cache,
            logits=self.next_token_logits(adapter, torch.stack([h[r.item()] for h, r in zip(hidden, last_rows)])),
            early_mask=encoded.attention_mask,
            late_mask=pruned["attention_mask"],
            next_position=next_positions(encoded.position_ids, encoded.attention_mask),
            mrope=encoded.position_ids.ndim == 3,
            kept=kept,
        )

    @torch.no_grad()
    def decode_step(self, adapter: Adapter, state: PrefillState, tokens: torch.Tensor) -> None:
        """Feed one token per sample; updates `state` (cache, masks, logits, position) in place."""
        language_model = adapter.language_model
        hidden = adapter.model.get_input_embeddings()(tokens[:, None])
        position_ids = step_position_ids(state.next_position, state.mrope)
        ones = state.early_mask.new_ones(tokens.shape[0], 1)
        state.early_mask = torch.cat([state.early_mask, ones], dim=1)
        state.late_mask = torch.cat([state.late_mask, ones], dim=1)
        depth = language_model.config.num_hidden_layers
        hidden = self.run_layers(language_model, range(self.layer), hidden, position_ids, state.early_mask, state.cache)
        hidden = self.run_layers(language_model, range(self.layer, depth), hidden, position_ids, state.late_mask, state.cache)
        state.logits = self.next_token_logits(adapter, hidden[:, -1])
        state.next_position = state.next_position + 1

    def generate(self, adapter: Adapter, encoded: EncodedBatch, keep_ratio: float, **generate_kwargs):
        """Greedy decoding: the new tokens (B, n_new), finished samples padded with pad_token_id, and per
        sample the original sequence positions that reached layers >= K."""
        max_new_tokens, eos, pad = self._generation_options(adapter.model, generate_kwargs)
        state = self.prefill(adapter, encoded, keep_ratio)
        finished = torch.zeros(state.logits.shape[0], dtype=torch.bool, device=state.logits.device)
        new_tokens = []
        for step in range(max_new_tokens):
            tokens = state.logits.argmax(-1)
            if pad is not None:
                tokens = tokens.masked_fill(finished, pad)
            new_tokens.append(tokens)
            finished |= torch.isin(tokens, eos)
            if bool(finished.all()) or step == max_new_tokens - 1:
                break
            self.decode_step(adapter, state, tokens)
        return torch.stack(new_tokens, dim=1), state.kept

    def _generation_options(self, model, generate_kwargs: dict) -> tuple[int, torch.Tensor, int | None]:
        """(max_new_tokens, eos ids, pad id) from the kwargs and the model's generation config."""
        unsupported = sorted(set(generate_kwargs) - set(SUPPORTED_GENERATE_OPTIONS))
        if unsupported:
            raise ExplainPruneError(
                f"{self.name} generation does not support {unsupported}; it decodes greedily and takes: "
                f"{', '.join(SUPPORTED_GENERATE_OPTIONS)}"
            )
        if generate_kwargs.get("do_sample"):
            raise ExplainPruneError(f"{self.name} generation is greedy: sampling (do_sample=True) is not supported")
        if generate_kwargs.get("num_beams", 1) != 1:
            raise ExplainPruneError(f"{self.name} generation is greedy: beam search (num_beams > 1) is not supported")
        config = model.generation_config
        max_new_tokens = generate_kwargs.get("max_new_tokens", config.max_new_tokens)
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
            raise ExplainPruneError(f"{self.name} generation needs max_new_tokens >= 1, got {max_new_tokens!r}")
        eos = generate_kwargs.get("eos_token_id", config.eos_token_id)
        eos_ids = torch.tensor([] if eos is None else [eos] if isinstance(eos, int) else list(eos), dtype=torch.long)
        pad = generate_kwargs.get("pad_token_id", config.pad_token_id)
        if pad is None and eos_ids.numel():
            pad = int(eos_ids[0])
        return max_new_tokens, eos_ids.to(model.device), pad
