"""`gae`: the oracle. Generates the full model's own answer greedily, explains it with GAE and
keeps the most relevant visual tokens.

Slow by design (a full generation, then one forward and one backward per answer token before the
pruned run): an upper bound for the learned predictor, not a way to save compute.
"""

from __future__ import annotations

from ..errors import ExplainPruneError
from ..explain import gae, generate_answers
from .base import Scorer, register


@register
class GAEScorer(Scorer):
    name = "gae"

    def __init__(self, max_new_tokens: int = 16):
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ExplainPruneError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        self.max_new_tokens = max_new_tokens

    def score(self, adapter, encoded):
        answers = generate_answers(adapter.model, encoded, self.max_new_tokens)
        return gae(adapter, encoded, answers)
