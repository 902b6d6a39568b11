"""`learned`: the paper's method. A predictor trained on GAE maps scores each visual token from its
layer-0 attention (per head, from the instruction rows): no gradients, no extra forward."""

from __future__ import annotations

from pathlib import Path

import torch

from ..adapters import Adapter, EncodedBatch
from ..attention import instruction_attention_rows
from ..embedded import EMBEDDED_DIR, PREDICTOR_DIRS
from ..errors import ExplainPruneError
from ..predictor import Predictor, PredictorMismatchError
from ..selection import Choice, choices_per_span
from .base import Scorer, register
from .similarity import cosine_similarity_matrix, span_embeddings


def span_features(adapter: Adapter, encoded: EncodedBatch) -> list[list[torch.Tensor]]:
    """The predictor's input: per sample, per span, (n_tokens, 2 * heads) layer-0 attention of the
    instruction rows on the span's scored tokens, on the model's device. Columns, per head:
      row-mean  the attention averaged over the instruction rows (the paper's input);
      row-peak  the largest, over the rows, of each row's attention renormalised over the span's tokens:
                a word that looks at few tokens (a colour, a shape) marks them even when its row gives
                the image little attention overall.
    """
    return [
        [row_mean_and_peak(rows[:, :, span.positions.to(rows.device)]) for span in spans]
        for rows, spans in zip(instruction_attention_rows(adapter, encoded), encoded.spans)
    ]


def row_mean_and_peak(attention: torch.Tensor) -> torch.Tensor:
    """(heads, rows, n_tokens) attention on one span's tokens -> (n_tokens, 2 * heads): per head the
    mean over the rows, then per head the max over the rows of each row renormalised over the span."""
    share = attention / attention.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(attention.dtype).tiny)
    return torch.cat([attention.mean(dim=1), share.amax(dim=1)]).T


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
            loaded.check_finite()
            if loaded.modality in self.predictors:
                raise ExplainPruneError(f"two {loaded.modality} predictors given: pass at most one per modality")
            self.predictors[loaded.modality] = loaded

    def predictor_for(self, model, modality: str) -> Predictor:
        """The predictor for `modality`: a given one, else the shipped one when `model` is the embedded model;
        on the model's device (moved there once)."""
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
                    "--out DIR`, train one with `explainprune train --arch grid`, and pass it with predictor=DIR (--predictor DIR)"
                )
            self.predictors[modality] = Predictor.from_pretrained(directory)
        if next(self.predictors[modality].parameters()).device != model.device:
            self.predictors[modality] = self.predictors[modality].to(model.device)
        return self.predictors[modality]

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


class LearnedRelevanceSelector(Scorer):
    """Base of the set-based scorers that spend the learned predictor's relevance on a greedy choice
    (`learned-mmr`, `learned-coverage`): `score` gives the predictor's heat maps, `choose` hands each span's
    relevance and its tokens' similarities (`span_similarity`) to `pick_from`."""

    def __init__(self, predictor: str | Path | Predictor | list | tuple | None = None):
        self.learned = LearnedScorer(predictor)

    def score(self, adapter, encoded):
        """The predictor's relevance (heat maps); the choice itself is set-based."""
        return self.learned.score(adapter, encoded)

    def pick_from(self, relevance: torch.Tensor, similarity: torch.Tensor, k: int) -> torch.Tensor:
        """The `k` indices to keep of one span, given its relevance (probabilities) and (n, n) similarities."""
        raise NotImplementedError

    def span_similarity(self, encoded: EncodedBatch, sample: int, span) -> torch.Tensor:
        """(n, n) similarities of one span's tokens: cosine of their LLM-input embeddings."""
        return cosine_similarity_matrix(span_embeddings(encoded, sample, span))

    def choose(self, adapter, encoded, budgets):
        relevance = self.learned.score(adapter, encoded)

        def choose_span(b, s, span, k):
            similarity = self.span_similarity(encoded, b, span)
            return Choice(self.pick_from(relevance[b][s].to(similarity.device), similarity, k))

        return choices_per_span(encoded.spans, budgets, choose_span)
