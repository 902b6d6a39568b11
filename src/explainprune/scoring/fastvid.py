"""`fastvid`: a FastVID-like input-stage merging method for video (Shen et al., 2025, "FastVID: Dynamic
Density Pruning for Fast Video Large Language Models").

Follows the official code (github.com/LunarShen/FastVID: the FastVID block of `Qwen2Model.forward` in
fastvid_llavaonevision/LLaVA-NeXT/llava/model/language_model/modeling_qwen2.py, and
`Qwen2_5_VLForConditionalGeneration.forward` in fastvid_qwen25vl), on each (t, h, w) grid of a span, whose
t temporal patches are the frames:
1. DySeg: cut between consecutive frames whose mean tokens have cosine similarity below `tau`, and at the
   `segments - 1` least similar transitions.
2. STPrune: each frame's share of the budget (split evenly over frames) is a `context_share` of context
   tokens and salient tokens for the rest; the salient tokens of a frame are kept as they are.
3. DTM: a segment's context budget goes to its anchor frames (every `anchor_every`-th frame counted back
   from the segment's last); an anchor frame's anchors are its density peaks among its non-salient tokens
   (`density.density_peak_scores`, `neighbours` nearest); every non-salient token of the segment joins the
   most cosine-similar anchor, and each anchor becomes w * anchor + (1 - w) * mean(joined),
   w = max(1 / (joined + 1), `beta`).

Adapted here: (a) saliency: FastVID ranks a frame's tokens by the vision encoder's [CLS] (LLaVA) or
last-block (Qwen2.5-VL) attention, which the scorer interface does not see; it uses each token's cosine
distance from its frame's mean LLM-input embedding instead (query-agnostic, like the original). (b) The
budget is exact: anchors an anchor frame cannot hold (too few non-salient tokens) go back to the most
salient tokens not yet kept. (c) `segments` defaults to t / 4 (the official 8 segments for 32 frames).
(d) Density ties go to the earlier token instead of random noise: deterministic. Official defaults:
tau 0.9, context share 0.4, anchor every 4 frames, beta 0.6, 4 neighbours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ExplainPruneError
from .base import Scorer, register
from .density import choose_by_grid, density_peak_scores, top_centres
from .uniform import split_budget


def segment_sizes(frames: torch.Tensor, segments: int, tau: float) -> list[int]:
    """DySeg: sizes of the consecutive frame segments of (t, n, D) tokens."""
    t = frames.shape[0]
    if t == 1:
        return [1]
    means = F.normalize(frames.float().mean(dim=1), dim=-1)
    similarity = (means[:-1] * means[1:]).sum(dim=-1)
    forced = torch.argsort(similarity, stable=True)[: max(0, min(segments, t) - 1)]
    cuts = sorted(set(forced.tolist()) | set((similarity < tau).nonzero().flatten().tolist()))
    bounds = [-1, *cuts, t - 1]
    return [end - start for start, end in zip(bounds[:-1], bounds[1:])]


def merge_into_anchors(members: torch.Tensor, anchors: torch.Tensor, beta: float) -> torch.Tensor:
    """DTM's merge: each member joins its most cosine-similar anchor; anchors become weighted averages."""
    joined = (F.normalize(members, dim=-1) @ F.normalize(anchors, dim=-1).T).argmax(dim=-1)
    counts = torch.bincount(joined, minlength=anchors.shape[0]).to(members.dtype)[:, None]
    sums = torch.zeros_like(anchors).index_add_(0, joined, members)
    weight = (1 / (counts + 1)).clamp(min=beta)
    return weight * anchors + (1 - weight) * sums / counts.clamp(min=1)


@register
class FastVIDScorer(Scorer):
    name = "fastvid"

    def __init__(
        self,
        segments: int | None = None,
        tau: float = 0.9,
        context_share: float = 0.4,
        anchor_every: int = 4,
        beta: float = 0.6,
        neighbours: int = 4,
    ):
        if segments is not None and (isinstance(segments, bool) or not isinstance(segments, int) or segments < 1):
            raise ExplainPruneError(f"fastvid: segments must be a positive integer or None, got {segments!r}")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not -1.0 <= tau <= 1.0:
            raise ExplainPruneError(f"fastvid: tau must be a cosine similarity in [-1, 1], got {tau!r}")
        for option, value in (("context_share", context_share), ("beta", beta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ExplainPruneError(f"fastvid: {option} must be in [0, 1], got {value!r}")
        for option, value in (("anchor_every", anchor_every), ("neighbours", neighbours)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ExplainPruneError(f"fastvid: {option} must be a positive integer, got {value!r}")
        self.segments, self.tau, self.context_share = segments, tau, context_share
        self.anchor_every, self.beta, self.neighbours = anchor_every, beta, neighbours

    def choose(self, adapter, encoded, budgets):
        return choose_by_grid(encoded, budgets, self.choose_grid)

    def choose_grid(self, frames: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices into the flattened grid, embeddings) of the `k` tokens kept of (t, n, D) frames."""
        t, n, _ = frames.shape
        flat = frames.reshape(t * n, -1).float()
        salience = 1 - F.cosine_similarity(frames.float(), frames.float().mean(dim=1, keepdim=True), dim=-1)
        kept: dict[int, torch.Tensor] = {}
        remaining, context = [], []
        for f, frame_k in enumerate(split_budget(k, [n] * t)):
            context.append(int(frame_k * self.context_share))
            order = torch.argsort(-salience[f], stable=True)
            for index in order[: frame_k - context[f]].tolist():
                kept[f * n + index] = flat[f * n + index]
            remaining.append(order[frame_k - context[f] :].sort().values + f * n)
        start = 0
        for length in segment_sizes(frames, self.segments or max(1, round(t / 4)), self.tau):
            members = flat[torch.cat(remaining[start : start + length])]
            anchor_frames = [f for f in range(start, start + length) if (start + length - 1 - f) % self.anchor_every == 0]
            shares = split_budget(sum(context[start : start + length]), [1] * len(anchor_frames))
            for f, share in zip(anchor_frames, shares):
                count = min(share, remaining[f].numel())
                if count == 0:
                    continue
                candidates = remaining[f]
                anchors = candidates[top_centres(density_peak_scores(flat[candidates], self.neighbours), count)]
                for index, merged in zip(anchors.tolist(), merge_into_anchors(members, flat[anchors], self.beta)):
                    kept[index] = merged
            start += length
        for index in torch.argsort(-salience.flatten(), stable=True).tolist():  # exact budget
            if len(kept) >= k:
                break
            kept.setdefault(index, flat[index])
        indices = torch.tensor(sorted(kept), dtype=torch.long)
        return indices, torch.stack([kept[i] for i in indices.tolist()])
