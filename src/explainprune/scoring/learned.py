"""`learned`: the paper's method. A predictor trained on GAE maps scores each visual token from its
layer-0 attention (per head, averaged over the instruction rows): no gradients, no extra forward."""

from __future__ import annotations

from pathlib import Path

import torch

from ..adapters import Adapter, EncodedBatch
from ..attention import instruction_attention
from ..embedded import EMBEDDED_DIR, PREDICTOR_DIR
from ..errors import ExplainPruneError
from ..predictor import Predictor
from .base import Scorer, register


def span_features(adapter: Adapter, encoded: EncodedBatch) -> list[list[torch.Tensor]]:
    """The predictor's input: per sample, per span, (n_tokens, heads) layer-0 attention of the
    instruction rows on the span's scored tokens."""
    maps = instruction_attention(adapter, encoded)
    features = []
    for b, spans in enumerate(encoded.spans):
        if spans and maps[b] is None:
            raise ExplainPruneError(
                f"sample {b} has no text after its last image or video: the predictor's features are the "
                "attention of those instruction tokens"
            )
        features.append([maps[b][:, span.positions.to(maps[b].device)].T.cpu() for span in spans])
    return features


def is_embedded_model(model) -> bool:
    """Whether `model` was loaded from the embedded model's directory."""
    name = getattr(model, "name_or_path", "")
    return bool(name) and Path(name).resolve() == EMBEDDED_DIR.resolve()


@register
class LearnedScorer(Scorer):
    name = "learned"

    def __init__(self, predictor: str | Path | Predictor | None = None):
        if predictor is not None and not isinstance(predictor, (str, Path, Predictor)):
            raise ExplainPruneError(f"predictor must be a directory or a Predictor, got {type(predictor).__name__}")
        self.predictor = Predictor.from_pretrained(predictor) if isinstance(predictor, (str, Path)) else predictor

    def predictor_for(self, model) -> Predictor:
        """The given predictor, or the shipped one when `model` is the embedded model."""
        if self.predictor is None:
            if not is_embedded_model(model):
                raise ExplainPruneError(
                    "the learned scorer needs a predictor trained for this model: pass predictor=DIR "
                    "(from `explainprune train`) or a Predictor; only the embedded model has a default"
                )
            self.predictor = Predictor.from_pretrained(PREDICTOR_DIR)
        return self.predictor

    def score(self, adapter, encoded):
        predictor = self.predictor_for(adapter.model)
        fingerprint = adapter.fingerprint
        scores = []
        for spans, features in zip(encoded.spans, span_features(adapter, encoded)):
            for span in spans:
                predictor.check_compatible(fingerprint, span.modality)
            scores.append([predictor.predict(f, span.grids).cpu() for f, span in zip(features, spans)])
        return scores
