"""How well a predicted relevance distribution matches the target one, per record.

Ties (e.g. the uniform predictor, or zeros in a target) are broken uniformly at random in
expectation, so a constant prediction scores exactly `fraction` recall rather than depending on
how a sort orders equal values.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

RECALL_FRACTIONS = (0.5, 0.25, 0.1)
METRIC_NAMES = ("kl", *(f"recall@{round(f * 100)}" for f in RECALL_FRACTIONS), "spearman")


def kl_divergence(target: torch.Tensor, predicted: torch.Tensor) -> float:
    """KL(target || predicted) summed over tokens, in nats."""
    target, predicted = target.double(), predicted.double()
    tiny = torch.finfo(torch.float32).tiny
    return (torch.xlogy(target, target) - target * predicted.clamp_min(tiny).log()).sum().item()


def top_count(n_tokens: int, fraction: float) -> int:
    """How many tokens make up the top `fraction` of `n_tokens` (at least one)."""
    return max(1, round(fraction * n_tokens))


def _top_membership(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Probability that each token is among the top k when ties are broken at random."""
    threshold = scores.topk(k).values[-1]
    above = scores > threshold
    tied = scores == threshold
    free_slots = k - above.sum()
    return above.double() + tied.double() * (free_slots / tied.sum())


def top_fraction_recall(target: torch.Tensor, predicted: torch.Tensor, fraction: float) -> float:
    """Share of the target's top `fraction` tokens that are among the predicted top k (same k)."""
    k = top_count(target.numel(), fraction)
    overlap = (_top_membership(target, k) * _top_membership(predicted, k)).sum()
    return (overlap / k).item()


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(values)
    _, group, counts = torch.unique_consecutive(values[order], return_inverse=True, return_counts=True)
    group_rank = counts.cumsum(0).double() - (counts.double() - 1) / 2
    ranks = torch.empty(values.numel(), dtype=torch.float64)
    ranks[order] = group_rank[group]
    return ranks


def spearman(target: torch.Tensor, predicted: torch.Tensor) -> float:
    """Spearman rank correlation (tied values share their average rank); 0 if either is constant."""
    a, b = _average_ranks(target), _average_ranks(predicted)
    a, b = a - a.mean(), b - b.mean()
    denominator = (a.square().sum() * b.square().sum()).sqrt()
    if denominator == 0:
        return 0.0
    return ((a * b).sum() / denominator).item()


def record_metrics(target: torch.Tensor, predicted: torch.Tensor) -> dict[str, float]:
    """All metrics for one record's target and predicted (n_tokens,) distributions."""
    if target.shape != predicted.shape or target.ndim != 1:
        raise ValueError(f"target {tuple(target.shape)} and prediction {tuple(predicted.shape)} must be equal 1-D")
    target, predicted = target.detach().cpu(), predicted.detach().cpu()
    metrics = {"kl": kl_divergence(target, predicted)}
    for fraction, name in zip(RECALL_FRACTIONS, METRIC_NAMES[1:]):
        metrics[name] = top_fraction_recall(target, predicted, fraction)
    metrics["spearman"] = spearman(target, predicted)
    return metrics


def mean_metrics(per_record: Iterable[dict[str, float]]) -> dict[str, float]:
    """Average each metric over records."""
    rows = list(per_record)
    if not rows:
        raise ValueError("no records to average metrics over")
    return {name: sum(row[name] for row in rows) / len(rows) for name in METRIC_NAMES}


def uniform_prediction(n_tokens: int) -> torch.Tensor:
    """The uninformative baseline: equal relevance for every token."""
    return torch.full((n_tokens,), 1.0 / n_tokens)
