"""`visionzip`: VisionZip (Yang et al., CVPR 2025), dominant tokens plus merged contextual tokens.

Official code: dvlab-research/VisionZip, `CLIPVisionTower_VisionZip.forward` (visionzip/clip_encoder.py).
Dominant tokens: the most salient ([CLS] attention at layer -2). Contextual tokens: of the remaining
tokens (in sequence order) every `step`-th is a centre, step = max(1, remaining // contextual); each
other remaining token joins the centre whose key (head-mean key of the saliency layer) is most
cosine-similar, and the centre is replaced by the merge of its group. The split follows the official
settings, 54 dominant + 10 contextual of 64 (162 + 30 of 192): contextual = round(k * 10 / 64).

Adaptations: the merge happens on the LLM-input (post-projector) embeddings, since the scored tokens
are what the LLM receives; a centre keeps its own position id (`Choice.embeds`). The official code
adds the centre to the mean of its other members before the projector; after the projector that sum
would double the embedding's scale, so the centre becomes the mean of its group (centre included).
Saliency and keys for encoders without [CLS] come from `vision_saliency.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..selection import Choice, choices_per_span
from ..vision_saliency import span_saliency
from .base import Scorer, register
from .similarity import span_embeddings

CONTEXTUAL_SHARE = 10 / 64  # official: dominant=54, contextual=10 of 64 tokens


def dominant_and_contextual(saliency: torch.Tensor, keys: torch.Tensor, embeds: torch.Tensor, k: int) -> Choice:
    """VisionZip's choice of `k` tokens: indices and their (merged) embeddings, in the same order."""
    n = saliency.shape[0]
    contextual = round(k * CONTEXTUAL_SHARE)
    dominant = torch.topk(saliency.float(), k - contextual).indices
    if contextual == 0:
        return Choice(dominant.cpu(), embeds[dominant])
    is_rest = torch.ones(n, dtype=torch.bool, device=saliency.device)
    is_rest[dominant] = False
    rest = is_rest.nonzero().flatten()  # sequence order
    step = max(1, rest.numel() // contextual)
    centre_slots = torch.arange(0, rest.numel(), step, device=rest.device)[:contextual]
    is_centre = torch.zeros(rest.numel(), dtype=torch.bool, device=rest.device)
    is_centre[centre_slots] = True
    centres, members = rest[is_centre], rest[~is_centre]
    normed = F.normalize(keys.float(), dim=-1)
    group = (normed[members] @ normed[centres].T).argmax(dim=1)  # each member's centre
    sums = embeds[centres].clone().index_add_(0, group, embeds[members])
    counts = torch.ones(contextual, device=embeds.device).index_add_(0, group, torch.ones_like(group, dtype=torch.float))
    merged = sums / counts[:, None]
    return Choice(torch.cat([dominant, centres]).cpu(), torch.cat([embeds[dominant], merged]))


@register
class VisionZip(Scorer):
    name = "visionzip"
    needs_vision_capture = True

    def score(self, adapter, encoded):
        """The saliency that picks the dominant tokens (heat maps); the choice itself merges."""
        return [[item.saliency.cpu() for item in sample] for sample in span_saliency(adapter, encoded)]

    def choose(self, adapter, encoded, budgets):
        saliency = span_saliency(adapter, encoded)

        def choose_span(b, s, span, k):
            item = saliency[b][s]
            embeds = span_embeddings(encoded, b, span)
            return dominant_and_contextual(item.saliency, item.keys.to(embeds.device), embeds, k)

        return choices_per_span(encoded.spans, budgets, choose_span)
