"""`divprune`: DivPrune (Alvar et al., CVPR 2025), diversity as a max-min problem.

Official code: vbdi/divprune, `LlavaMetaForCausalLM.DivPrune` (LLaVA/llava/model/llava_arch.py), run
on the LLM-input (post-projector) visual embeddings. With distance d = 1 - cosine similarity, the first
token is the one farthest from its nearest neighbour; each next token maximises its minimum distance
to the tokens already kept.

Adaptation: kept tokens are excluded explicitly (the official loop relies on their zero self-distance,
which can re-pick a token when the rest are exact duplicates); budgets are per image or video.
"""

from __future__ import annotations

import torch

from ..selection import Choice, choices_per_span
from .base import Scorer, register
from .similarity import cosine_similarity_matrix, span_embeddings


def max_min_diversity(similarity: torch.Tensor, k: int) -> torch.Tensor:
    """Greedy max-min selection of `k` of n >= 2 items given their (n, n) cosine similarities."""
    distance = 1.0 - similarity
    n = distance.shape[0]
    to_others = distance.masked_fill(torch.eye(n, dtype=torch.bool, device=distance.device), float("inf"))
    chosen = [int(torch.argmax(to_others.min(dim=0).values))]
    nearest_kept = distance[chosen[0]].clone()
    nearest_kept[chosen[0]] = -float("inf")
    for _ in range(k - 1):
        j = int(torch.argmax(nearest_kept))
        chosen.append(j)
        nearest_kept = torch.minimum(nearest_kept, distance[j])
        nearest_kept[chosen] = -float("inf")
    return torch.tensor(chosen)


@register
class DivPrune(Scorer):
    name = "divprune"

    def choose(self, adapter, encoded, budgets):
        def choose_span(b, s, span, k):
            return Choice(max_min_diversity(cosine_similarity_matrix(span_embeddings(encoded, b, span)), k))

        return choices_per_span(encoded.spans, budgets, choose_span)
