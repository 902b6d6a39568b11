"""Selection as pure functions: per-span budgets, top-k, and the sequence positions that survive.

Flow: scores (per sample, per visual span) + budgets -> one `Choice` per span -> kept positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .adapters import EncodedBatch, VisualSpan
from .errors import ExplainPruneError
from .prune import token_budget


@dataclass
class Choice:
    """What survives of one visual span.

    `indices` index `span.positions` (the span's scored tokens). `embeds`, when given, are (k, D)
    replacement input embeddings of those kept tokens in the same order: merging methods (VisionZip)
    keep a token's position id and replace its embedding with a merged one.
    """

    indices: torch.Tensor
    embeds: torch.Tensor | None = None


def span_budgets(encoded: EncodedBatch, keep_ratio: float) -> list[list[int]]:
    """Per sample, per span: k = max(1, round(keep_ratio * n)) of its n scored tokens."""
    return [[token_budget(keep_ratio, span.num_tokens) for span in spans] for spans in encoded.spans]


def top_k(scores: torch.Tensor, span: VisualSpan, k: int) -> Choice:
    """The `k` highest-scoring tokens of a span; NaN scores are refused rather than ranked arbitrarily."""
    scores = scores.float()
    if scores.numel() != span.num_tokens:
        raise ExplainPruneError(f"got {scores.numel()} scores for a visual span of {span.num_tokens} tokens")
    if bool(torch.isnan(scores).any()):
        raise ExplainPruneError(
            "the scorer produced NaN scores (e.g. a predictor with NaN weights): retrain or reload it"
        )
    return Choice(torch.topk(scores, k, sorted=False).indices)


def choices_per_span(spans_per_sample, budgets, choose_span) -> list[list[Choice]]:
    """One `Choice` per span from `choose_span(sample, span_index, span, k)`; spans whose budget covers
    them keep everything."""
    return [
        [
            Choice(torch.arange(span.num_tokens)) if k >= span.num_tokens else choose_span(b, s, span, k)
            for s, (span, k) in enumerate(zip(spans, budgets[b]))
        ]
        for b, spans in enumerate(spans_per_sample)
    ]


def check_per_span(what: str, values, spans_per_sample) -> None:
    """`values` holds one entry per sample and, in each, one per visual span of that sample."""
    counts = [len(spans) for spans in spans_per_sample]
    given = [len(sample) for sample in values] if isinstance(values, (list, tuple)) else None
    if given != counts:
        raise ExplainPruneError(
            f"{what} per sample and span: expected {counts} (spans per sample), got {given if given is not None else type(values).__name__}"
        )


def choices_from_scores(scores, spans_per_sample, budgets, pick=top_k) -> list[list[Choice]]:
    """One `Choice` per span from precomputed scores; spans whose budget covers them keep everything."""
    check_per_span("scores", scores, spans_per_sample)
    return choices_per_span(spans_per_sample, budgets, lambda b, s, span, k: pick(scores[b][s], span, k))


def keep_everything(encoded: EncodedBatch) -> list[list[Choice]]:
    """Choices that keep every scored token (keep ratio 1.0)."""
    return [[Choice(torch.arange(span.num_tokens)) for span in spans] for spans in encoded.spans]


def check_choices(encoded: EncodedBatch, choices: list[list[Choice]], budgets: list[list[int]]) -> None:
    """Each span's choice has exactly its budget of distinct, in-range indices (a scorer bug otherwise)."""
    check_per_span("choices", choices, encoded.spans)
    for b, spans in enumerate(encoded.spans):
        for s, span in enumerate(spans):
            indices = choices[b][s].indices
            k = min(budgets[b][s], span.num_tokens)
            distinct = torch.unique(indices)
            if distinct.numel() != k or indices.numel() != k or int(distinct.min()) < 0 or int(distinct.max()) >= span.num_tokens:
                raise ExplainPruneError(
                    f"a scorer kept {indices.numel()} indices ({distinct.numel()} distinct) of a {span.num_tokens}-token "
                    f"span whose budget is {k}: scorers must return exactly k distinct indices in range"
                )


def choose(scorer, adapter, encoded: EncodedBatch, keep_ratio: float, scores=None) -> list[list[Choice]]:
    """Per sample, per span, what survives at `keep_ratio`: everything at 1.0, else the scorer's
    choice within the span budgets (ranking `scores` when given instead of rescoring), checked.
    Shared by `Compressor` and the serving integrations."""
    if keep_ratio >= 1.0 or not any(encoded.spans):
        return keep_everything(encoded)
    budgets = span_budgets(encoded, keep_ratio)
    if scores is None:
        choices = scorer.choose(adapter, encoded, budgets)
    elif getattr(scorer, "ranks_by_scores", False):
        choices = choices_from_scores(scores, encoded.spans, budgets, scorer.pick)
    else:
        raise ExplainPruneError(f"scorer {scorer.name!r} chooses sets of tokens: it cannot take precomputed scores")
    check_choices(encoded, choices, budgets)
    return choices


def kept_positions(encoded: EncodedBatch, choices: list[list[Choice]]) -> list[torch.Tensor]:
    """Per sample, the sorted sequence positions that survive: real non-visual tokens, structural
    tokens, and each span's chosen scored tokens."""
    kept = []
    for b, spans in enumerate(encoded.spans):
        keep = encoded.attention_mask[b].bool().cpu() & ~encoded.visual_mask(b)
        for span, choice in zip(spans, choices[b]):
            keep[span.structural] = True
            keep[span.positions[choice.indices.cpu()]] = True
        kept.append(keep.nonzero().flatten())
    return kept
