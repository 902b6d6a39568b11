"""`scope`: SCOPE (Deng et al., NeurIPS 2025), saliency-coverage oriented selection.

Official code: kinredon/SCOPE, `SCOPE` (scope/clip_encoder.py). The coverage of a kept set K is
sum_i max(0, max_{j in K} S_ij), S the cosine similarity of the visual features; each step keeps the
token with the largest coverage gain times saliency^alpha (alpha = 1 as in the official scripts).

Adaptations: the features are the LLM-input (post-projector) visual embeddings rather than CLIP's
layer -2 output; the saliency is `vision_saliency.py`'s (CLIP: [CLS] attention at layer -2, as
published; encoders without [CLS]: attention each token receives in the last full-attention block).
"""

from __future__ import annotations

import torch

from ..selection import Choice, choices_per_span
from ..vision_saliency import span_saliency
from .base import Scorer, register
from .similarity import cosine_similarity_matrix, span_embeddings


def saliency_coverage(similarity: torch.Tensor, saliency: torch.Tensor, k: int, alpha: float = 1.0) -> torch.Tensor:
    """Greedy `k` indices maximising coverage gain x saliency^alpha over (n, n) similarities."""
    weight = saliency.float().clamp(min=0) ** alpha
    covered = similarity.new_zeros(similarity.shape[0])
    available = torch.ones(similarity.shape[0], dtype=torch.bool, device=similarity.device)
    chosen = []
    for _ in range(k):
        gains = (similarity - covered[:, None]).clamp(min=0).sum(dim=0) * weight
        j = int(torch.argmax(gains.masked_fill(~available, -float("inf"))))
        chosen.append(j)
        available[j] = False
        covered = torch.maximum(covered, similarity[j])
    return torch.tensor(chosen)


@register
class Scope(Scorer):
    name = "scope"
    needs_vision_capture = True

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def score(self, adapter, encoded):
        """The saliency (heat maps); the choice itself is set-based."""
        return [[item.saliency.cpu() for item in sample] for sample in span_saliency(adapter, encoded)]

    def choose(self, adapter, encoded, budgets):
        saliency = span_saliency(adapter, encoded)

        def choose_span(b, s, span, k):
            similarity = cosine_similarity_matrix(span_embeddings(encoded, b, span))
            return Choice(saliency_coverage(similarity, saliency[b][s].saliency.to(similarity.device), k, self.alpha))

        return choices_per_span(encoded.spans, budgets, choose_span)
