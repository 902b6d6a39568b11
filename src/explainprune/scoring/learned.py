"""`learned`: the paper's method. A predictor trained on GAE maps scores each visual token from its
layer-0 attention (per head, averaged over the instruction rows): no gradients, no extra forward."""

from __future__ import annotations

from pathlib import Path

import torch

from ..adapters import Adapter, EncodedBatch
from ..attention import instruction_attention
from ..embedded import EMBEDDED_DIR, PREDICTOR_DIRS
from ..errors import ExplainPruneError
from ..predictor import Predictor, PredictorMismatchError
from .base import Scorer, register


def span_features(adapter: Adapter, encoded: EncodedBatch) -> list[list[torch.Tensor]]:
    """The predictor's input: per sample, per span, (n_tokens, heads) layer-0 attention of the
    instruction rows on the span's scored tokens, on the model's device."""
    maps = instruction_attention(adapter, encoded)
    features = []
    for b, spans in enumerate(encoded.spans):
        if spans and maps[b] is None:
            raise ExplainPruneError(
                f"sample {b} has no text after its last image or video: the predictor's features are the "
                "attention of those instruction tokens"
            )
        features.append([maps[b][:, span.positions.to(maps[b].device)].T for span in spans])
    return features


TRAINING_DATA = {"image": "synthetic:split=train,n=8000", "video": "synthetic-video:split=train,n=4000,size=112|168|224,frames=4|8"}


def is_embedded_model(model) -> bool:
    """Whether `model` was loaded from the embedded model's directory."""
    name = getattr(model, "name_or_path", "")
    return bool(name) and Path(name).resolve() == EMBEDDED_DIR.resolve()


@register
class LearnedScorer(Scorer):
    """Scores each span with the predictor of its modality (image or video, as the predictor's config
    says). `predictor`: one directory or `Predictor`, or a list of them, at most one per modality; for the
    embedded model the shipped predictors are the default."""

    name = "learned"

    def __init__(self, predictor: str | Path | Predictor | list | tuple | None = None):
        given = predictor if isinstance(predictor, (list, tuple)) else [] if predictor is None else [predictor]
        self.predictors: dict[str, Predictor] = {}
        for item in given:
            if not isinstance(item, (str, Path, Predictor)):
                raise ExplainPruneError(f"predictor must be a directory or a Predictor, got {type(item).__name__}")
            loaded = Predictor.from_pretrained(item) if isinstance(item, (str, Path)) else item
            if loaded.modality in self.predictors:
                raise ExplainPruneError(f"two {loaded.modality} predictors given: pass at most one per modality")
            self.predictors[loaded.modality] = loaded

    def predictor_for(self, model, modality: str) -> Predictor:
        """The predictor for `modality`: a given one, else the shipped one when `model` is the embedded
        model; on the model's device (moved there once)."""
        if modality not in self.predictors:
            if not is_embedded_model(model):
                if self.predictors:
                    raise PredictorMismatchError(
                        f"the learned scorer was given {' and '.join(sorted(self.predictors))} predictors but the "
                        f"input has {modality}: add a predictor trained on {modality} data (predictor=[DIR, DIR])"
                    )
                raise ExplainPruneError(
                    f"the learned scorer needs a predictor trained for this model on {modality} data: pass "
                    "predictor=DIR (from `explainprune collect` and `explainprune train`), or a list of an image "
                    "and a video predictor; only the embedded model has defaults"
                )
            directory = PREDICTOR_DIRS[modality]
            if not (directory / "config.json").is_file():
                raise ExplainPruneError(
                    f"the embedded model ships no {modality} predictor yet ({directory.parent.name}/{directory.name}): "
                    f"collect targets with `explainprune collect --model embedded --data {TRAINING_DATA[modality]} "
                    "--out DIR`, train one with `explainprune train`, and pass it as predictor=DIR"
                )
            self.predictors[modality] = Predictor.from_pretrained(directory)
        predictor = self.predictors[modality]
        if next(predictor.parameters()).device != model.device:
            self.predictors[modality] = predictor = predictor.to(model.device)
        return predictor

    def score(self, adapter, encoded):
        fingerprint = adapter.fingerprint
        scores = []
        for spans, features in zip(encoded.spans, span_features(adapter, encoded)):
            sample_scores = []
            for span, feature in zip(spans, features):
                predictor = self.predictor_for(adapter.model, span.modality)
                predictor.check_compatible(fingerprint, span.modality)
                sample_scores.append(predictor.predict(feature, span.grids))
            scores.append(sample_scores)
        return scores
