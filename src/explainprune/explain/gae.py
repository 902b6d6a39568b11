"""GAE, the generic attention explainability of Chefer et al. (2021), for the model's own answer.

Per layer l: A_bar_l = mean over heads of relu(A_l * dS/dA_l). With R = I and R <- R + A_bar_l R in
layer order, the relevance of token j for a query row q is R[q, j]. S is each answer token's logit
in turn (at the row predicting it); a token's relevance is averaged over the answer tokens.

`gae` propagates only the needed row, from the last layer down (r <- r + r A_bar_l): O(N^2) per
layer. `gae_full_matrix` builds R in full (O(N^3) per layer) and is kept as the reference.
"""

from __future__ import annotations

import torch

from ..adapters import Adapter, EncodedBatch
from .forward import answer_token_gradients, explained_forward, explaining, spans_of, teacher_forced_batch


def gradient_weighted_attention(attention: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """A_bar = mean over heads of relu(A * dS/dA): (B, heads, N, N) -> (B, N, N)."""
    product = attention.float() * gradient.float()
    return product.clamp_(min=0).mean(dim=1)


def gae(adapter: Adapter, encoded: EncodedBatch, answers: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """GAE relevance of each scored visual token for the answer, by row propagation."""
    return _explain(adapter, encoded, answers, _propagate_rows)


def gae_full_matrix(adapter: Adapter, encoded: EncodedBatch, answers: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """The same relevance computed with full N x N relevance matrices (reference, slow)."""
    return _explain(adapter, encoded, answers, _propagate_matrices)


def _explain(adapter, encoded, answers, propagate) -> list[list[torch.Tensor]]:
    batch = teacher_forced_batch(adapter, encoded, answers)
    with explaining(adapter.model, eager=True):
        forward = explained_forward(adapter.model, batch, attentions=True, gradients=True)
        relevance = torch.zeros(batch.inputs_embeds.shape[:2])
        for t, gradients in answer_token_gradients(forward, forward.attentions):
            with torch.no_grad():  # the propagation itself must not grow the autograd graph
                rows = propagate(list(zip(forward.attentions, gradients)), batch.query_rows[:, t])
            relevance += rows.cpu() * batch.answer_mask[:, t, None].cpu()
            del gradients  # free this token's gradients before the next backward
    relevance /= batch.answer_lengths.cpu()[:, None]
    return spans_of(encoded, relevance)


def _propagate_rows(layers: list[tuple[torch.Tensor, torch.Tensor]], query_rows: torch.Tensor) -> torch.Tensor:
    """Row `query_rows[b]` of R for each sample, from the last layer down: (B, N)."""
    batch, _, length, _ = layers[0][0].shape
    row = torch.zeros(batch, 1, length, device=layers[0][0].device)
    row[torch.arange(batch), 0, query_rows] = 1.0
    for attention, gradient in reversed(layers):
        row = row + torch.bmm(row, gradient_weighted_attention(attention, gradient))
    return row[:, 0]


def _propagate_matrices(layers: list[tuple[torch.Tensor, torch.Tensor]], query_rows: torch.Tensor) -> torch.Tensor:
    """The full R, then its row `query_rows[b]` for each sample: (B, N)."""
    batch, _, length, _ = layers[0][0].shape
    relevance = torch.eye(length, device=layers[0][0].device).expand(batch, -1, -1)
    for attention, gradient in layers:
        relevance = relevance + torch.bmm(gradient_weighted_attention(attention, gradient), relevance)
    return relevance[torch.arange(batch), query_rows]
