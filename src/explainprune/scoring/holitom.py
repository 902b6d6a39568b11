"""`holitom`: a HoliTom-like input-stage merging method for video (Shao et al., 2025, "HoliTom: Holistic
Token Merging for Fast Video Large Language Models"), its outer-LLM part.

Follows the official code (github.com/cokeshao/HoliTom, holitom/llava_arch.py: `select_static_windows`,
`get_static_dynamic_features`, `merge_tokens_by_density`, `cluster_dpc_knn`, `merge_tokens_by_clustering`),
on each (t, h, w) grid of a span, whose t temporal patches are the frames:
1. Temporal windows: a dynamic programme splits the frames into consecutive windows that maximise the
   tokens saved, (window length - 1) x (positions whose token stays cosine-similar above `tau` from each
   frame of the window to the next).
2. Static tokens: in each window such a position becomes one token, the mean over the window's frames,
   kept at the window's first frame (its position id); the other positions stay, frame by frame.
3. The budget is shared over each window's static tokens and each frame's remaining tokens in proportion to
   their counts; a group over its share is merged by density-peak clustering (`density.py`,
   min(`neighbours`, share) nearest): the centres stay, every other token joins its nearest centre (scaled
   Euclidean), and a centre becomes the mean of itself and its joined tokens.

Adapted here: the budget is exact (HoliTom rescales its retain ratio after static merging and keeps
ceil(ratio x n) per group); when static merging leaves fewer tokens than the budget, the least static
positions (lowest similarity) are split back into per-frame tokens until the budget is reached. Density
ties go to the earlier token instead of random noise: deterministic. The in-LLM merging stage of HoliTom is
not part of this input-stage method. Official defaults: tau 0.8, 7 neighbours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ExplainPruneError
from .base import Scorer, register
from .density import choose_by_grid, density_peak_scores, scaled_distances, top_centres
from .uniform import split_budget


def static_windows(similarity: torch.Tensor, tau: float) -> list[tuple[int, int]]:
    """Consecutive (first, last) frame windows maximising sum((last - first) x static positions), from the
    (t - 1, n) cosine similarities of each position's token between consecutive frames."""
    t = similarity.shape[0] + 1
    steady = similarity > tau
    best = [0.0] * (t + 1)  # best[i]: the most tokens saved on frames 0..i-1
    start_of = [0] * (t + 1)
    for end in range(1, t + 1):
        best[end], start_of[end] = best[end - 1], end - 1
        run = torch.ones_like(steady[0])
        for first in range(end - 2, -1, -1):  # window first .. end-1
            run = run & steady[first]
            saved = best[first] + (end - 1 - first) * int(run.sum())
            if saved > best[end]:
                best[end], start_of[end] = saved, first
    windows, end = [], t
    while end > 0:
        windows.append((start_of[end], end - 1))
        end = start_of[end]
    return windows[::-1]


def merge_by_density(tokens: torch.Tensor, count: int, neighbours: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre indices, merged centre tokens): `count` density-peak centres of the (m, D) tokens, each the
    mean of itself and the other tokens nearest to it."""
    centres = top_centres(density_peak_scores(tokens, min(neighbours, count)), count)
    joined = scaled_distances(tokens)[:, centres].argmin(dim=-1)
    joined[centres] = torch.arange(count, device=tokens.device)
    sums = torch.zeros(count, tokens.shape[1], dtype=tokens.dtype, device=tokens.device).index_add_(0, joined, tokens)
    return centres, sums / torch.bincount(joined, minlength=count).to(tokens.dtype)[:, None]


@register
class HoliTomScorer(Scorer):
    name = "holitom"

    def __init__(self, tau: float = 0.8, neighbours: int = 7):
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not -1.0 <= tau <= 1.0:
            raise ExplainPruneError(f"holitom: tau must be a cosine similarity in [-1, 1], got {tau!r}")
        if isinstance(neighbours, bool) or not isinstance(neighbours, int) or neighbours < 1:
            raise ExplainPruneError(f"holitom: neighbours must be a positive integer, got {neighbours!r}")
        self.tau, self.neighbours = tau, neighbours

    def choose(self, adapter, encoded, budgets):
        return choose_by_grid(encoded, budgets, self.choose_grid)

    def choose_grid(self, frames: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices into the flattened grid, embeddings) of the `k` tokens kept of (t, n, D) frames."""
        t, n, _ = frames.shape
        frames = frames.float()
        similarity = F.cosine_similarity(frames[:-1], frames[1:], dim=-1)  # (t - 1, n)
        windows = static_windows(similarity, self.tau)
        static = [
            (similarity[first:last] > self.tau).all(dim=0) if last > first else torch.zeros(n, dtype=torch.bool)
            for first, last in windows
        ]
        self._split_static_until(k, windows, static, similarity)
        groups = []  # (flat indices where the tokens are kept, their tokens)
        for (first, last), steady in zip(windows, static):
            positions = steady.nonzero().flatten()
            if positions.numel():
                groups.append((first * n + positions, frames[first : last + 1, positions].mean(dim=0)))
            moving = (~steady).nonzero().flatten()
            groups += [(f * n + moving, frames[f, moving]) for f in range(first, last + 1) if moving.numel()]
        indices, embeds = [], []
        for (where, tokens), share in zip(groups, split_budget(k, [len(w) for w, _ in groups])):
            if share >= len(where):
                indices.append(where)
                embeds.append(tokens)
            elif share:
                centres, merged = merge_by_density(tokens, share, self.neighbours)
                indices.append(where[centres])
                embeds.append(merged)
        indices, embeds = torch.cat(indices), torch.cat(embeds)
        order = torch.argsort(indices)
        return indices[order].cpu(), embeds[order]

    def _split_static_until(self, k, windows, static, similarity) -> None:
        """Turn the least static positions back into per-frame tokens while fewer than `k` tokens remain."""
        n = static[0].numel()
        count = sum(int(s.sum()) + (last - first + 1) * (n - int(s.sum())) for (first, last), s in zip(windows, static))
        candidates = [
            (float(similarity[first:last, p].min()), w, p)
            for w, ((first, last), steady) in enumerate(zip(windows, static))
            for p in steady.nonzero().flatten().tolist()
        ]
        for _, w, p in sorted(candidates):
            if count >= k:
                break
            static[w][p] = False
            count += windows[w][1] - windows[w][0]
