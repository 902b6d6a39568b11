"""Top-k budgets and sequence surgery: drop visual tokens, keep order and original position ids."""

from __future__ import annotations

import math
import numbers
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from .adapters import EncodedBatch
from .errors import ExplainPruneError

if TYPE_CHECKING:
    from .selection import Choice


def check_keep_ratio(keep_ratio) -> float:
    """`keep_ratio` (any real number: float, int, numpy scalar, Fraction) as a float in (0, 1], or a clear error."""
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, numbers.Real):
        raise ExplainPruneError(f"keep_ratio must be a number in (0, 1], got {keep_ratio!r}")
    keep_ratio = float(keep_ratio)
    if not math.isfinite(keep_ratio) or not 0.0 < keep_ratio <= 1.0:
        raise ExplainPruneError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    return float(keep_ratio)


def token_budget(keep_ratio: float, num_tokens: int) -> int:
    """Tokens kept of an image with `num_tokens` scored tokens: max(1, round(keep_ratio * n))."""
    return min(num_tokens, max(1, round(keep_ratio * num_tokens)))


def gather_batch(encoded: EncodedBatch, kept: list[torch.Tensor]) -> dict:
    """Model inputs holding only the `kept` positions of each sample, left-padded (as generation needs,
    whatever the padding side of the input)."""
    length = max(int(k.numel()) for k in kept)
    batch = encoded.batch_size
    embeds = encoded.inputs_embeds
    new_embeds = embeds.new_zeros(batch, length, embeds.shape[-1])
    new_mask = encoded.attention_mask.new_zeros(batch, length)
    mrope = encoded.position_ids.ndim == 3
    pos_shape = (3, batch, length) if mrope else (batch, length)
    new_positions = encoded.position_ids.new_zeros(pos_shape)
    for b, positions in enumerate(kept):
        n = int(positions.numel())
        target = slice(length - n, length)
        positions = positions.to(embeds.device)
        new_embeds[b, target] = embeds[b, positions]
        new_mask[b, target] = 1
        if mrope:
            new_positions[:, b, target] = encoded.position_ids[:, b, positions]
        else:
            new_positions[b, target] = encoded.position_ids[b, positions]
    return {"inputs_embeds": new_embeds, "attention_mask": new_mask, "position_ids": new_positions}


def with_replacements(encoded: EncodedBatch, choices: list[list[Choice]]) -> EncodedBatch:
    """`encoded` with the replacement embeddings of merging choices written at their kept positions
    (a copy; `encoded` itself is unchanged when no choice carries embeddings)."""
    if all(choice.embeds is None for sample in choices for choice in sample):
        return encoded
    embeds = encoded.inputs_embeds.clone()
    for b, spans in enumerate(encoded.spans):
        for span, choice in zip(spans, choices[b]):
            if choice.embeds is None:
                continue
            if choice.embeds.shape != (choice.indices.numel(), embeds.shape[-1]):
                raise ExplainPruneError(
                    f"replacement embeddings of shape {tuple(choice.embeds.shape)} for {choice.indices.numel()} kept "
                    f"tokens of width {embeds.shape[-1]}: a merging scorer must return one embedding per kept token"
                )
            positions = span.positions[choice.indices.cpu()].to(embeds.device)
            embeds[b, positions] = choice.embeds.to(embeds.device, embeds.dtype)
    return replace(encoded, inputs_embeds=embeds)
