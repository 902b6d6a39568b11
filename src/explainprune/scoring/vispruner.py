"""`vispruner`: VisPruner (Zhang et al., ICCV 2025), important tokens by visual attention, then diverse
tokens by iterative duplicate removal.

Official code: Theia-4869/VisPruner, `LlavaMetaForCausalLM.encode_images` (llava/model/llava_arch.py).
int(k * important_ratio) tokens (ratio 0.5) are the most salient; the others, in descending saliency,
are thinned until the rest of the budget remains: each round splits them alternately into A and B and
drops the (at most 8) tokens of A most cosine-similar to some token of B.

Adaptations: similarities use the LLM-input (post-projector) embeddings rather than CLIP features;
saliency is `vision_saliency.py`'s ([CLS] attention for CLIP, attention received otherwise).
"""

from __future__ import annotations

import torch

from ..errors import ExplainPruneError
from ..selection import Choice, choices_per_span
from ..vision_saliency import span_saliency
from .base import Scorer, register
from .similarity import cosine_similarity_matrix, span_embeddings

REMOVED_PER_ROUND = 8  # official: r = min(8, R - diverse)


def important_then_diverse(saliency: torch.Tensor, similarity: torch.Tensor, k: int, important_ratio: float = 0.5) -> torch.Tensor:
    """VisPruner's `k` indices given saliency (n,) and cosine similarities (n, n)."""
    important_count = int(k * important_ratio)
    diverse_count = k - important_count
    order = torch.argsort(saliency.float(), descending=True, stable=True)
    important, residual = order[:important_count], order[important_count:]
    if diverse_count == 0:
        return important
    while residual.numel() > diverse_count:
        removed = min(REMOVED_PER_ROUND, residual.numel() - diverse_count)
        a, b = residual[::2], residual[1::2]
        duplication = similarity[a][:, b].max(dim=1).values
        distinct = torch.argsort(duplication, descending=True, stable=True)[removed:]
        residual = torch.cat([a[distinct], b])
    return torch.cat([important, residual])


@register
class VisPruner(Scorer):
    name = "vispruner"
    needs_vision_capture = True

    def __init__(self, important_ratio: float = 0.5):
        if not 0.0 <= important_ratio <= 1.0:
            raise ExplainPruneError(f"vispruner option important_ratio must be in [0, 1], got {important_ratio!r}")
        self.important_ratio = float(important_ratio)

    def score(self, adapter, encoded):
        """The saliency that picks the important tokens (heat maps); the choice itself is set-based."""
        return [[item.saliency.cpu() for item in sample] for sample in span_saliency(adapter, encoded)]

    def choose(self, adapter, encoded, budgets):
        saliency = span_saliency(adapter, encoded)

        def choose_span(b, s, span, k):
            similarity = cosine_similarity_matrix(span_embeddings(encoded, b, span))
            ranked = saliency[b][s].saliency.to(similarity.device)
            return Choice(important_then_diverse(ranked, similarity, k, self.important_ratio).cpu())

        return choices_per_span(encoded.spans, budgets, choose_span)
