"""`layer0`: layer-0 attention from the instruction rows, averaged over heads.

The paper's no-gradient baseline (`rows="mean"`: averaged over the instruction rows); also the input of
the learned predictor. `rows="peak"` reads the predictor's other channel instead: per head the max over
the rows of each row's attention renormalised over the span (`learned.span_features`).
"""

from __future__ import annotations

from ..errors import ExplainPruneError
from ..predictor.model import split_features
from .base import Scorer, register
from .learned import span_features

ROWS = ("mean", "peak")


@register
class Layer0Scorer(Scorer):
    name = "layer0"

    def __init__(self, rows: str = "mean"):
        if rows not in ROWS:
            raise ExplainPruneError(f"layer0: rows must be one of {', '.join(ROWS)}, got {rows!r}")
        self.rows = rows

    def score(self, adapter, encoded):
        column = ROWS.index(self.rows)
        return [
            [split_features(features)[column].mean(dim=1) for features in sample_features]
            for sample_features in span_features(adapter, encoded)
        ]
