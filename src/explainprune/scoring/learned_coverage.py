"""`learned-coverage`: SCOPE's greedy coverage objective with the learned predictor's relevance as saliency.

SCOPE (kinredon/SCOPE, `SCOPE` in scope/clip_encoder.py; our `scope` scorer) keeps, step by step, the
token that maximises coverage gain x saliency^alpha: how much it raises, summed over all tokens, each
token's best cosine similarity to a kept one, times its saliency. SCOPE's saliency comes from the vision
encoder and so ignores the question; here it is the learned predictor's relevance (its probabilities),
the paper's question-conditioned map, so the coverage is spent where the question looks. Similarities
are of the LLM-input (post-projector) visual embeddings, as in `scope`. `alpha` was chosen on the
validation split only (docs/eval/peers.md: the sweep and its command); SCOPE's own default is 1.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ExplainPruneError
from ..predictor import Predictor
from .base import register
from .learned import LearnedRelevanceSelector
from .scope import saliency_coverage

DEFAULT_ALPHA = 0.25  # the best of 0.1..4 on synthetic:split=val at 224 and 448 px (docs/eval/peers.md)


@register
class LearnedCoverage(LearnedRelevanceSelector):
    name = "learned-coverage"

    def __init__(self, predictor: str | Path | Predictor | list | None = None, alpha: float = DEFAULT_ALPHA):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ExplainPruneError(f"learned-coverage option alpha must be a positive number, got {alpha!r}")
        super().__init__(predictor)
        self.alpha = float(alpha)

    def pick_from(self, relevance, similarity, k):
        return saliency_coverage(similarity, relevance, k, self.alpha)
