"""The scorer interface and registry: a name -> a strategy that picks each image's visual tokens.

Input-stage scorers see what the adapter encoded (LLM-input embeddings, positions, visual spans) and
never the `Compressor`. In-LLM pruners (`explainprune.inllm`) live in the same registry, so both are
chosen by name, but they are a different kind: they run inside the model's forward.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import torch

from ..errors import ExplainPruneError
from ..registry import Registry
from ..selection import Choice, choices_from_scores, top_k

if TYPE_CHECKING:
    from ..adapters import Adapter, EncodedBatch, VisualSpan

SCORERS: Registry = Registry("scorer", entry_point_group="explainprune.scorers")
register = SCORERS.register


class Scorer:
    """Picks the visual tokens of each span that the LLM will see.

    Rank-based scorers implement `score` (and optionally `pick`, a per-span rule given the scores);
    set-based ones (diversity, DPP, merging) override `choose` itself.
    """

    name: str = ""
    needs_vision_capture: bool = False  # encode must keep the vision saliency block's input (vision_saliency.py)
    needs_labels: bool = False  # an oracle: built per batch from the samples (`for_samples`)

    def score(self, adapter: Adapter, encoded: EncodedBatch) -> list[list[torch.Tensor]]:
        """Per sample, per visual span: one score per scored token (higher = keep)."""
        raise NotImplementedError(f"scorer {self.name!r} chooses sets of tokens and gives no per-token scores")

    def pick(self, scores: torch.Tensor, span: VisualSpan, k: int) -> Choice:
        """The `k` tokens of `span` to keep given its scores: the top k."""
        return top_k(scores, span, k)

    def choose(self, adapter: Adapter, encoded: EncodedBatch, budgets: list[list[int]]) -> list[list[Choice]]:
        """Per sample, per span, the tokens to keep within `budgets[b][s]`: `pick` over `score`."""
        return choices_from_scores(self.score(adapter, encoded), encoded.spans, budgets, self.pick)

    @property
    def ranks_by_scores(self) -> bool:
        """Whether the choice is a function of `score` alone (scores can be reused across keep ratios)."""
        return type(self).choose is Scorer.choose


def scorer_class(name: str) -> type:
    """The registered scorer or in-LLM pruner class called `name`, or an error listing the known ones."""
    return SCORERS.get(name)


def scorer_options(name: str) -> list[str]:
    """The options the scorer called `name` takes (its constructor's parameters), e.g. ["predictor", "alpha"]."""
    return [p for p in inspect.signature(scorer_class(name).__init__).parameters if p not in ("self", "args", "kwargs")]


def make_scorer(scorer, **options):
    """A scorer (or in-LLM pruner) instance from its registered name and options, with clear errors."""
    if not isinstance(scorer, str):
        if options:
            raise ExplainPruneError(f"options {sorted(options)} given with a ready scorer instance")
        from ..inllm import InLLMPruner

        if not isinstance(scorer, (Scorer, InLLMPruner)):
            raise ExplainPruneError(
                f"scorer must be a registered name or a Scorer instance, got {type(scorer).__name__}; "
                f"known names: {', '.join(SCORERS)}"
            )
        return scorer
    accepted = scorer_options(scorer)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ExplainPruneError(
            f"scorer {scorer!r} does not take option(s) {unknown}; it takes: {', '.join(accepted) or 'none'}"
        )
    return scorer_class(scorer)(**options)
