"""Top-k budgets and sequence surgery: drop visual tokens, keep order and original position ids."""

from __future__ import annotations

import math

import torch

from .adapters import EncodedBatch
from .errors import ExplainPruneError


def check_keep_ratio(keep_ratio) -> float:
    """`keep_ratio` as a float in (0, 1], or a clear error."""
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)):
        raise ExplainPruneError(f"keep_ratio must be a number in (0, 1], got {keep_ratio!r}")
    if not math.isfinite(keep_ratio) or not 0.0 < keep_ratio <= 1.0:
        raise ExplainPruneError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    return float(keep_ratio)


def token_budget(keep_ratio: float, num_tokens: int) -> int:
    """Tokens kept of an image with `num_tokens` scored tokens: max(1, round(keep_ratio * n))."""
    return min(num_tokens, max(1, round(keep_ratio * num_tokens)))


def kept_positions(encoded: EncodedBatch, sample: int, selected: list[torch.Tensor]) -> torch.Tensor:
    """Sorted sequence positions that survive: real non-visual tokens, structural tokens and the
    `selected` indices of each span (indices into that span's scored positions)."""
    keep = encoded.attention_mask[sample].bool().cpu() & ~encoded.visual_mask(sample)
    for span, chosen in zip(encoded.spans[sample], selected):
        keep[span.structural] = True
        keep[span.positions[chosen.cpu()]] = True
    return keep.nonzero().flatten()


def gather_batch(encoded: EncodedBatch, kept: list[torch.Tensor], padding_side: str = "left") -> dict:
    """Model inputs holding only the `kept` positions of each sample, padded on `padding_side`."""
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
        target = slice(length - n, length) if padding_side == "left" else slice(0, n)
        positions = positions.to(embeds.device)
        new_embeds[b, target] = embeds[b, positions]
        new_mask[b, target] = 1
        if mrope:
            new_positions[:, b, target] = encoded.position_ids[:, b, positions]
        else:
            new_positions[b, target] = encoded.position_ids[b, positions]
    return {"inputs_embeds": new_embeds, "attention_mask": new_mask, "position_ids": new_positions}


def padding_side_of(attention_mask: torch.Tensor) -> str:
    """'right' if some sample ends in padding, else 'left' (also for unpadded batches)."""
    return "right" if bool((attention_mask[:, -1] == 0).any()) else "left"
