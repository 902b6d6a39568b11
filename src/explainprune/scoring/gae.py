"""`gae`: the oracle. Generates the full model's own answer greedily, explains it with GAE and
keeps the most relevant visual tokens.

The recipe is the `default` GAE variant (explain/gae.py: log-probability, gradient w.r.t. the
pre-softmax scores, mean over heads, answer tokens without the end-of-answer token) unless
`variant="paper"` (Chefer et al. 2021 as the paper uses it) or single options say otherwise, e.g.
`Compressor(model, processor, scorer="gae", quantity="margin")`.

Slow by design (a full generation, then one forward and one backward per answer token before the
pruned run): an upper bound for the learned predictor, not a way to save compute.
"""

from __future__ import annotations

from ..errors import ExplainPruneError
from ..explain import gae, gae_variant, generate_answers
from .base import Scorer, register


@register
class GAEScorer(Scorer):
    name = "gae"

    def __init__(
        self,
        max_new_tokens: int = 16,
        variant: str = "default",
        quantity: str | None = None,
        gradient: str | None = None,
        heads: str | None = None,
        answer_tokens: str | None = None,
    ):
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ExplainPruneError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        self.max_new_tokens = max_new_tokens
        self.variant = gae_variant(
            variant, quantity=quantity, gradient=gradient, heads=heads, answer_tokens=answer_tokens
        )

    def score(self, adapter, encoded):
        answers = generate_answers(adapter.model, encoded, self.max_new_tokens, keep_stop=True)
        return gae(adapter, encoded, answers, self.variant)
