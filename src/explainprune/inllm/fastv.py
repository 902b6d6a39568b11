"""`fastv`: FastV (Chen et al., ECCV 2024), pruning inside the LLM at layer K (default 2).

Each visual token is scored by the attention it receives at layer K from the sample's last token,
averaged over heads; the top-k of each image continue through layers K..N-1.
"""

from __future__ import annotations

from ..attention import attention_rows
from ..scoring.base import register
from ..selection import choices_from_scores
from .base import InLLMPruner, last_real_rows


@register
class FastV(InLLMPruner):
    """FastV: keep the visual tokens the last token attends to most at layer `layer`."""

    name = "fastv"

    def score(self, adapter, encoded):
        """Per span, the last token's head-mean attention; `encoded.inputs_embeds` is layer K's input."""
        probs = attention_rows(
            adapter,
            self.layer,
            encoded.inputs_embeds,
            encoded.position_ids,
            encoded.attention_mask,
            last_real_rows(encoded.attention_mask),
        )
        return [
            [probs[b][:, 0].float().mean(0)[span.positions.to(probs[b].device)] for span in spans]
            for b, spans in enumerate(encoded.spans)
        ]

    def choose(self, adapter, encoded, budgets):
        return choices_from_scores(self.score(adapter, encoded), encoded.spans, budgets)
