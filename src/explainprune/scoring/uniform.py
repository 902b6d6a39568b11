"""`uniform`: a spatially even subsample of each grid (farthest-point order over (t, h, w))."""

from __future__ import annotations

from functools import lru_cache

import torch

from .base import Scorer, register


@lru_cache(maxsize=256)
def farthest_point_order(grid: tuple[int, int, int]) -> torch.Tensor:
    """Rank of each cell of `grid` (raster order) in a farthest-point traversal from the centre:
    any prefix of the traversal is spread evenly over the grid."""
    t, h, w = grid
    coords = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"), -1)
    coords = coords.reshape(-1, 3).float()
    centre = coords.mean(0)
    n = coords.shape[0]
    rank = torch.empty(n, dtype=torch.long)
    current = int(((coords - centre) ** 2).sum(-1).argmin())
    distance = torch.full((n,), float("inf"))
    for step in range(n):
        rank[current] = step
        distance = torch.minimum(distance, ((coords - coords[current]) ** 2).sum(-1))
        distance[current] = -1.0
        current = int(distance.argmax())
    return rank


@register
class UniformScorer(Scorer):
    name = "uniform"

    def score(self, compressor, encoded):
        scores = []
        for spans in encoded.spans:
            per_span = []
            for span in spans:
                # Interleave segments: a token's score is its relative rank within its own segment.
                parts = [1.0 - farthest_point_order(g).float() / (g[0] * g[1] * g[2]) for g in span.grids]
                per_span.append(torch.cat(parts))
            scores.append(per_span)
        return scores
