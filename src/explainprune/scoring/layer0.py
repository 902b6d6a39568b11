"""`layer0`: layer-0 attention from the instruction rows, averaged over heads and rows.

The paper's no-gradient baseline; also the input of the learned predictor.
"""

from __future__ import annotations

from ..attention import instruction_attention
from .base import Scorer, register


@register
class Layer0Scorer(Scorer):
    name = "layer0"

    def score(self, adapter, encoded):
        maps = instruction_attention(adapter, encoded)
        return [
            [maps[b].mean(0)[span.positions.to(maps[b].device)] for span in spans] if spans else []
            for b, spans in enumerate(encoded.spans)
        ]
