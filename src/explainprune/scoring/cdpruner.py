"""`cdpruner`: CDPruner (Zhang et al., NeurIPS 2025), a conditional DPP over the visual tokens.

Official code: Theia-4869/CDPruner, `LlavaMetaForCausalLM.encode_images` (llava/model/llava_arch.py).
Kernel L = diag(r) S diag(r): S the cosine similarity of the post-projector visual embeddings, r the
relevance of each visual token to the instruction (mean cosine similarity to the instruction tokens,
min-max normalised); the kept set is the greedy MAP of the DPP, with the fast incremental Cholesky
update of Chen et al. (NeurIPS 2018): each step picks the largest remaining marginal gain d_j^2, then
e = (L_j - c_j C) / d_j is appended to C and d^2 -= e^2.

Adaptations: these models have no CLIP text tower, so r compares the visual tokens' LLM-input
embeddings with the LLM's own input embeddings of the instruction tokens (text after the last
visual token). The official LLaVA code negates the similarity, a quirk its authors observed with CLIP
only (Theia-4869/CDPruner issue #14); it is not negated here. Normalisation is per image or video.
"""

from __future__ import annotations

import torch

from ..selection import Choice, choices_per_span
from .base import Scorer, register
from .similarity import cosine_similarity_matrix, instruction_embeddings, span_embeddings

MIN_GAIN = 1e-6  # d_j^2 below this adds no volume: the kernel's rank is exhausted


def instruction_relevance(visual: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
    """(n,) relevance in [0, 1]: mean cosine similarity of each visual token to the instruction tokens,
    min-max normalised as the official code does (all ones without instruction tokens)."""
    if instruction.shape[0] == 0:
        return torch.ones(visual.shape[0], device=visual.device)
    relevance = cosine_similarity_matrix(visual, instruction).mean(dim=1)
    return (relevance - relevance.min() + 1e-6) / (relevance.max() - relevance.min() + 1e-6)


def conditional_kernel(visual: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """L = diag(r) S diag(r), S the cosine similarity of the visual embeddings."""
    return relevance[:, None] * cosine_similarity_matrix(visual) * relevance[None, :]


def greedy_dpp_map(kernel: torch.Tensor, k: int) -> torch.Tensor:
    """`k` indices of the greedy MAP of the DPP with (n, n) kernel, by incremental Cholesky updates.

    Once no token adds volume (the kernel's rank is exhausted: every remaining gain <= MIN_GAIN), the
    rest of the budget goes to the remaining tokens by their kernel diagonal (relevance^2)."""
    n = kernel.shape[0]
    cholesky_rows = kernel.new_zeros(k, n)
    gains = torch.diagonal(kernel).clone()
    available = torch.ones(n, dtype=torch.bool, device=kernel.device)
    chosen = []
    for i in range(k):
        j = int(torch.argmax(gains.masked_fill(~available, -float("inf"))))
        if not gains[j] > MIN_GAIN:  # also catches NaN
            break
        chosen.append(j)
        available[j] = False
        row = (kernel[j] - cholesky_rows[:i, j] @ cholesky_rows[:i]) / gains[j].sqrt()
        cholesky_rows[i] = row
        gains = gains - row.square()
    rest = torch.diagonal(kernel).masked_fill(~available, -float("inf"))
    fill = torch.topk(rest, k - len(chosen)).indices.tolist() if len(chosen) < k else []
    return torch.tensor(chosen + fill)


@register
class CDPruner(Scorer):
    name = "cdpruner"

    def choose(self, adapter, encoded, budgets):
        def choose_span(b, s, span, k):
            visual = span_embeddings(encoded, b, span)
            relevance = instruction_relevance(visual, instruction_embeddings(encoded, b))
            return Choice(greedy_dpp_map(conditional_kernel(visual, relevance), k))

        return choices_per_span(encoded.spans, budgets, choose_span)
