"""What the diversity-based scorers compare: each span's LLM-input (post-projector) visual embeddings,
their cosine similarities, and the instruction tokens' input embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..adapters import EncodedBatch, VisualSpan


def span_embeddings(encoded: EncodedBatch, sample: int, span: VisualSpan) -> torch.Tensor:
    """(n, D) float32 LLM-input embeddings of the span's scored tokens, in `span.positions` order."""
    embeds = encoded.inputs_embeds
    return embeds[sample, span.positions.to(embeds.device)].float()


def instruction_embeddings(encoded: EncodedBatch, sample: int) -> torch.Tensor:
    """(m, D) float32 LLM-input embeddings of the sample's instruction (text after its last visual token)."""
    embeds = encoded.inputs_embeds
    return embeds[sample, encoded.instruction_rows(sample).to(embeds.device)].float()


def cosine_similarity_matrix(features: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
    """(n, m) cosine similarities between the rows of `features` and of `other` (default: itself)."""
    normed = F.normalize(features.float(), dim=-1)
    return normed @ (normed if other is None else F.normalize(other.float(), dim=-1)).T
