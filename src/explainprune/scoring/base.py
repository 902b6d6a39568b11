"""The scorer interface and registry: a name -> a strategy that ranks each image's visual tokens."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import torch

from ..errors import ExplainPruneError

if TYPE_CHECKING:
    from ..adapters import EncodedBatch, VisualSpan
    from ..compressor import Compressor

SCORERS: dict[str, type[Scorer]] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator: make a scorer available by its `name`."""
    SCORERS[cls.name] = cls
    return cls


class Scorer:
    """Ranks visual tokens. Input-stage scorers implement `score`; scorers that prune inside the
    LLM set `input_stage = False` and implement `generate` instead."""

    name: str = ""
    input_stage: bool = True

    def score(self, compressor: Compressor, encoded: EncodedBatch) -> list[list[torch.Tensor]]:
        """Per sample, per visual span: one score per scored token (higher = keep)."""
        raise NotImplementedError

    def select(self, scores: torch.Tensor, span: VisualSpan, k: int) -> torch.Tensor:
        """Indices (into `span.positions`) of the `k` tokens to keep."""
        return torch.topk(scores.float(), k, sorted=False).indices

    def generate(self, compressor: Compressor, inputs: dict, **generate_kwargs) -> torch.Tensor:
        raise NotImplementedError


def scorer_class(name: str) -> type[Scorer]:
    """The registered scorer class called `name`, or an error listing the known ones."""
    if not isinstance(name, str) or name not in SCORERS:
        raise ExplainPruneError(f"unknown scorer {name!r}; known scorers: {', '.join(sorted(SCORERS))}")
    return SCORERS[name]


def make_scorer(scorer: str | Scorer, **options) -> Scorer:
    """A scorer instance from its registered name and options, with clear errors for bad ones."""
    if isinstance(scorer, Scorer):
        if options:
            raise ExplainPruneError(f"options {sorted(options)} given with a ready scorer instance")
        return scorer
    cls = scorer_class(scorer)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ExplainPruneError(
            f"scorer {scorer!r} does not take option(s) {unknown}; it takes: {', '.join(accepted) or 'none'}"
        )
    return cls(**options)
