"""`random`: uniformly random tokens, reproducible from a seed. A strong baseline; report it."""

from __future__ import annotations

import torch

from .base import Scorer, register


@register
class RandomScorer(Scorer):
    name = "random"

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def score(self, adapter, encoded):
        return [[torch.rand(span.num_tokens, generator=self.generator) for span in spans] for spans in encoded.spans]
