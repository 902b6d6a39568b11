"""`learned-mmr`: the learned predictor's relevance made diverse by maximal marginal relevance.

As IDPruner does with its learned selector (YF-T/IDPruner, `idpruner` in
pruning/strategies/idpruner.py): relevance = the predictor's raw scores (its log-probabilities, the
logits up to a per-image constant, as IDPruner's `mode="raw"`) min-max normalised per image;
the most relevant token first, then each step the token maximising
lambda * relevance - (1 - lambda) * max cosine similarity to the tokens already kept, similarities of
the LLM-input (post-projector) visual embeddings. `mmr_lambda` was chosen on the validation split only
(docs/eval/peers.md: the sweep and its command); 1.0 is the plain `learned` ranking.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ExplainPruneError
from ..predictor import Predictor
from .base import register
from .learned import LearnedRelevanceSelector

DEFAULT_LAMBDA = 0.0  # the best of 0..1 on synthetic:split=val at 224 and 448 px (docs/eval/peers.md)
MIN_PROBABILITY = 1e-30  # floor before the log (a probability that underflowed to 0)


def maximal_marginal_relevance(relevance: torch.Tensor, similarity: torch.Tensor, k: int, mmr_lambda: float) -> torch.Tensor:
    """Greedy `k` indices: the most relevant first, then argmax of
    lambda * relevance - (1 - lambda) * max similarity to the chosen."""
    relevance = relevance.float().to(similarity.device)
    chosen = [int(torch.argmax(relevance))]
    nearest = similarity[chosen[0]].clone()
    available = torch.ones_like(relevance, dtype=torch.bool)
    available[chosen[0]] = False
    for _ in range(k - 1):
        marginal = mmr_lambda * relevance - (1.0 - mmr_lambda) * nearest
        j = int(torch.argmax(marginal.masked_fill(~available, -float("inf"))))
        chosen.append(j)
        available[j] = False
        nearest = torch.maximum(nearest, similarity[j])
    return torch.tensor(chosen)


@register
class LearnedMMR(LearnedRelevanceSelector):
    name = "learned-mmr"

    def __init__(self, predictor: str | Path | Predictor | list | None = None, mmr_lambda: float = DEFAULT_LAMBDA):
        if isinstance(mmr_lambda, bool) or not isinstance(mmr_lambda, (int, float)) or not 0.0 <= mmr_lambda <= 1.0:
            raise ExplainPruneError(f"learned-mmr option mmr_lambda must be a number in [0, 1], got {mmr_lambda!r}")
        super().__init__(predictor)
        self.mmr_lambda = float(mmr_lambda)

    def pick_from(self, relevance, similarity, k):
        scores = relevance.float().clamp(min=MIN_PROBABILITY).log()
        normalised = (scores - scores.min()) / (scores.max() - scores.min() + 1e-6)
        return maximal_marginal_relevance(normalised, similarity, k, self.mmr_lambda)
