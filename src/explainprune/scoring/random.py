"""`random`: uniformly random tokens, reproducible from a seed. A strong baseline; report it."""

from __future__ import annotations

import numbers

import torch

from ..errors import ExplainPruneError
from .base import Scorer, register


@register
class RandomScorer(Scorer):
    name = "random"

    def __init__(self, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
            raise ExplainPruneError(f"random option seed must be an integer in [0, 2**63), got {seed!r}")
        self.generator = torch.Generator().manual_seed(int(seed))

    def score(self, adapter, encoded):
        return [[torch.rand(span.num_tokens, generator=self.generator) for span in spans] for spans in encoded.spans]
