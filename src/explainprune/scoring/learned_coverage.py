"""`learned-coverage`: SCOPE's greedy coverage objective with the learned predictor's relevance as saliency,
over tokens that cover what looks alike nearby.

SCOPE (kinredon/SCOPE, `SCOPE` in scope/clip_encoder.py; our `scope` scorer) keeps, step by step, the
token that maximises coverage gain x saliency^alpha: how much it raises, summed over all tokens, each
token's best similarity to a kept one, times its saliency. SCOPE's saliency comes from the vision
encoder and so ignores the question; here it is the learned predictor's relevance (its probabilities),
the paper's question-conditioned map, so the coverage is spent where the question looks.

The similarity of two tokens is the cosine of their LLM-input (post-projector) embeddings, as in `scope`,
times a Gaussian of their distance in the picture (`spatial`, a fraction of its shorter side;
`similarity.spatial_kernel`): a token covers the tokens like it near it, not a lookalike across the
picture, so the budget left after the relevant tokens spreads over the whole scene instead of one token
per kind of background. That spread is what the model needs beside the relevant tokens
(docs/eval/spatial-coverage.md); `spatial=0` is SCOPE's plain cosine. `alpha` and `spatial` were chosen
on the validation split only (docs/eval/peers.md: the sweeps and their commands); SCOPE's own alpha is 1.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import torch

from ..errors import ExplainPruneError
from ..predictor import Predictor
from .base import register
from .learned import LearnedRelevanceSelector
from .scope import saliency_coverage
from .similarity import spatial_kernel

# The best on synthetic:split=val at 224 and 448 px (docs/eval/peers.md): alpha of 0.1..4, spatial of 0..0.25.
DEFAULT_ALPHA = 0.5
DEFAULT_SPATIAL = 0.125


@register
class LearnedCoverage(LearnedRelevanceSelector):
    name = "learned-coverage"

    def __init__(
        self,
        predictor: str | Path | Predictor | list | None = None,
        alpha: float = DEFAULT_ALPHA,
        spatial: float = DEFAULT_SPATIAL,
    ):
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
            raise ExplainPruneError(f"learned-coverage option alpha must be a positive number, got {alpha!r}")
        if isinstance(spatial, bool) or not isinstance(spatial, numbers.Real) or not spatial >= 0:
            raise ExplainPruneError(
                f"learned-coverage option spatial must be a number >= 0 (a fraction of the picture's shorter side; "
                f"0: plain cosine), got {spatial!r}"
            )
        super().__init__(predictor)
        self.alpha = float(alpha)
        self.spatial = float(spatial)

    def span_similarity(self, encoded, sample, span) -> torch.Tensor:
        similarity = super().span_similarity(encoded, sample, span)
        if not self.spatial:
            return similarity
        return similarity * spatial_kernel(span.grids, self.spatial, similarity.device)

    def pick_from(self, relevance, similarity, k):
        return saliency_coverage(similarity, relevance, k, self.alpha)
