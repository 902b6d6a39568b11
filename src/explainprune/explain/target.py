"""Training targets from relevance maps, as in the paper: zero the bottom half, normalise the rest."""

from __future__ import annotations

import torch


def preprocess_target(relevance: torch.Tensor) -> torch.Tensor:
    """Zero the lowest floor(n/2) of the n values (ties keep the earlier token) and divide the rest
    by their sum: a distribution over the tokens that keeps their order."""
    values = relevance.detach().float().flatten().cpu()
    if values.numel() == 0:
        raise ValueError("cannot make a target from an empty relevance map")
    if not torch.isfinite(values).all() or (values < 0).any():
        raise ValueError("relevance must be finite and non-negative to make a target")
    count = values.numel()
    kept = torch.argsort(values, descending=True, stable=True)[: count - count // 2]
    target = torch.zeros_like(values)
    target[kept] = values[kept]
    total = target.sum()
    if total <= 0:
        raise ValueError("relevance map is zero on its top half: it gives no target")
    return target / total
