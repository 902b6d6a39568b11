"""Gradient x input: |dS/dx . x| per token, x its input embedding, S each answer token's logit in turn,
averaged over the answer tokens."""

from __future__ import annotations

import torch

from ..adapters import Adapter, EncodedBatch
from .forward import answer_token_gradients, explained_forward, explaining, spans_of, teacher_forced_batch


def gradxinput(adapter: Adapter, encoded: EncodedBatch, answers: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Gradient x input relevance of each scored visual token for the answer."""
    batch = teacher_forced_batch(adapter, encoded, answers)
    with explaining(adapter.model, eager=False):
        forward = explained_forward(adapter.model, batch, attentions=False, gradients=True)
        embeds = forward.inputs_embeds
        relevance = torch.zeros(embeds.shape[:2])
        for t, (gradient,) in answer_token_gradients(forward, (embeds,)):
            per_token = (gradient.float() * embeds.detach().float()).sum(dim=-1).abs()
            relevance += per_token.cpu() * batch.answer_mask[:, t, None].cpu()
    relevance /= batch.answer_lengths.cpu()[:, None]
    return spans_of(encoded, relevance)
