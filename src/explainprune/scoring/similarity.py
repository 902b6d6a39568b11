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


def token_places(grids: list[tuple[int, int, int]], device: torch.device | str | None = None) -> torch.Tensor:
    """(n, 2) place (row, column) of each scored token of a span, in raster order of its (t, h, w) grids,
    in units of each grid's shorter side (cell centres): every grid of a span (a base image and its
    crops) spans the same picture, and a temporal patch's token sits where the same cell of every
    other patch sits."""
    places = []
    for steps, height, width in grids:
        side = min(height, width)
        rows, columns = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        cell = torch.stack([rows.flatten(), columns.flatten()], dim=1).float().add(0.5).div(side)
        places.append(cell.repeat(steps, 1))
    return torch.cat(places).to(device)


def spatial_kernel(grids: list[tuple[int, int, int]], width: float, device: torch.device | str | None = None) -> torch.Tensor:
    """(n, n) Gaussian closeness exp(-d^2 / (2 width^2)) of the span's tokens' places (`token_places`),
    `width` a fraction of the picture's shorter side."""
    rows, columns = token_places(grids, device).T
    squared = (rows[:, None] - rows[None, :]).square() + (columns[:, None] - columns[None, :]).square()
    return torch.exp(-squared / (2 * width**2))
