"""Attention rollout (Abnar and Zuidema, 2020): forward only, no gradients.

A_hat_l = 0.5 * mean over heads of A_l + 0.5 * I; R = A_hat_{L-1} ... A_hat_0; the relevance of a
token is its column in the answer's query rows, averaged over the answer tokens.
"""

from __future__ import annotations

import torch

from ..adapters import Adapter, EncodedBatch
from .forward import explained_forward, explaining, spans_of, teacher_forced_batch


def rollout(adapter: Adapter, encoded: EncodedBatch, answers: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Rollout relevance of each scored visual token for the answer (row propagation)."""
    batch = teacher_forced_batch(adapter, encoded, answers)
    with explaining(adapter.model, eager=True):
        forward = explained_forward(adapter.model, batch, attentions=True, gradients=False)
    samples, width = batch.answers.shape
    length = batch.inputs_embeds.shape[1]
    rows = torch.zeros(samples, width, length)
    rows[torch.arange(samples)[:, None], torch.arange(width)[None, :], batch.query_rows.cpu()] = 1.0
    for attention in reversed(forward.attentions):
        rows = 0.5 * torch.bmm(rows, attention.float().mean(dim=1).cpu()) + 0.5 * rows
    mask = batch.answer_mask.cpu()
    relevance = (rows * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)
    return spans_of(encoded, relevance)
