"""Density-peak clustering of visual tokens (DPC-kNN), the merging step of FastVID and HoliTom, and the
per-grid loop of such merging methods.

A token's density is exp(-mean squared distance to its `neighbours` nearest tokens); its separation is the
distance to the nearest denser token (the largest distance for the densest). Tokens that are both dense and
far from anything denser are cluster centres (score = density x separation). Distances are Euclidean
divided by sqrt(D), as in both official implementations. Ties in density go to the earlier token (the
official code breaks them with random noise instead), so the result is deterministic.
"""

from __future__ import annotations

import torch

from ..selection import Choice
from .uniform import split_budget


def scaled_distances(tokens: torch.Tensor) -> torch.Tensor:
    """(n, n) Euclidean distances between (n, D) tokens divided by sqrt(D)."""
    tokens = tokens.float()
    return torch.cdist(tokens, tokens) / tokens.shape[-1] ** 0.5


def density_peak_scores(tokens: torch.Tensor, neighbours: int) -> torch.Tensor:
    """(n,) centre scores of the (n, D) tokens: density x separation (each token counts as its own
    nearest neighbour, as in the official code)."""
    n = tokens.shape[0]
    distances = scaled_distances(tokens)
    nearest = torch.topk(distances, min(neighbours, n), dim=-1, largest=False).values
    density = torch.exp(-(nearest**2).mean(dim=-1))
    order = torch.arange(n, device=tokens.device)
    denser = (density[None, :] > density[:, None]) | (
        (density[None, :] == density[:, None]) & (order[None, :] < order[:, None])
    )  # denser[i, j]: token j is denser than token i
    largest = distances.max()
    separation = torch.where(denser, distances, largest).min(dim=-1).values
    return density * separation


def top_centres(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` highest scores, ties to the earlier index, in ascending index order."""
    order = torch.argsort(-scores, stable=True)[:count]
    return order.sort().values


def choose_by_grid(encoded, budgets: list[list[int]], choose_grid) -> list[list[Choice]]:
    """Choices of a merging method that works on one (t, h, w) grid at a time.

    Each span's budget is shared over its grids in proportion to their sizes; `choose_grid(tokens, k)`
    gets a grid's (t, h*w, D) LLM-input embeddings and returns (indices into the flattened grid,
    (k, D) embeddings of the kept tokens). Spans whose budget covers them keep everything unchanged.
    """
    choices = []
    for b, spans in enumerate(encoded.spans):
        row = []
        for span, k in zip(spans, budgets[b]):
            if k >= span.num_tokens:
                row.append(Choice(torch.arange(span.num_tokens)))
                continue
            tokens = encoded.inputs_embeds[b, span.positions.to(encoded.inputs_embeds.device)]
            sizes = [t * h * w for t, h, w in span.grids]
            indices, embeds, offset = [], [], 0
            for (t, h, w), size, share in zip(span.grids, sizes, split_budget(k, sizes)):
                part = tokens[offset : offset + size]
                if share >= size:
                    kept, kept_embeds = torch.arange(size), part
                else:
                    kept, kept_embeds = choose_grid(part.reshape(t, h * w, -1), share)
                indices.append(kept.cpu() + offset)
                embeds.append(kept_embeds.to(tokens.dtype))
                offset += size
            row.append(Choice(torch.cat(indices), torch.cat(embeds)))
        choices.append(row)
    return choices
