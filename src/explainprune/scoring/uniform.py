"""`uniform`: a spatially even subsample of each grid: a regular lattice over (t, h, w)."""

from __future__ import annotations

import torch

from ..selection import Choice
from .base import Scorer, register


def lattice_indices(grid: tuple[int, int, int], k: int) -> torch.Tensor:
    """`k` raster indices of `grid` on an even lattice: each axis is sampled at cell centres with
    a count proportional to its length, then surplus lattice points are dropped evenly."""
    sizes = torch.tensor(grid, dtype=torch.float64)
    n = int(sizes.prod())
    active = sizes > 1
    fraction = (k / n) ** (1.0 / max(1, int(active.sum())))
    counts = [int(min(size, max(1, -(-size * fraction // 1)))) if size > 1 else 1 for size in grid]
    axes = [((torch.arange(c) + 0.5) * size / c).long() for c, size in zip(counts, grid)]
    t, h, w = torch.meshgrid(*axes, indexing="ij")
    lattice = ((t * grid[1] + h) * grid[2] + w).flatten()
    pick = torch.linspace(0, lattice.numel() - 1, k).round().long()
    return lattice[pick]


def split_budget(k: int, sizes: list[int]) -> list[int]:
    """Share `k` over segments in proportion to their sizes (largest remainder)."""
    total = sum(sizes)
    exact = [k * s / total for s in sizes]
    shares = [int(e) for e in exact]
    for i in sorted(range(len(sizes)), key=lambda i: exact[i] - shares[i], reverse=True)[: k - sum(shares)]:
        shares[i] += 1
    return shares


@register
class UniformScorer(Scorer):
    name = "uniform"

    def score(self, adapter, encoded):
        return [[torch.zeros(span.num_tokens) for span in spans] for spans in encoded.spans]

    def pick(self, scores, span, k):
        sizes = [t * h * w for t, h, w in span.grids]
        offsets = torch.tensor([0] + sizes).cumsum(0)
        parts = [
            lattice_indices(grid, share) + offsets[i]
            for i, (grid, share) in enumerate(zip(span.grids, split_budget(k, sizes)))
            if share
        ]
        return Choice(torch.cat(parts))
