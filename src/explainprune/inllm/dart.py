"""`dart`: DART inside the LLM at layer K = 2, as published (ZichenWen1/DART; the selection and its
official source are described in `explainprune.scoring.dart`).

Layers < K run on the full sequence; the pivots are ranked by the L1 norm of layer K-1's keys, read
from the prefill's KV cache (at K = 0: layer 0's keys computed from the input embeddings), and the
duplicates judged on the final-norm'ed layer-K input states.
"""

from __future__ import annotations

import torch

from ..errors import ExplainPruneError
from ..scoring.base import register
from ..scoring.dart import PIVOTS, check_pivot_counts, dart_choices, input_key_norms
from .base import InLLMPruner


@register
class DART(InLLMPruner):
    """DART at layer `layer`: pivots by key norm, then the tokens least similar to each pivot."""

    name = "dart"

    def __init__(self, layer: int = 2, image_pivots: int = PIVOTS, text_pivots: int = PIVOTS):
        super().__init__(layer)
        check_pivot_counts(self.name, image_pivots, text_pivots)
        self.image_pivots, self.text_pivots = image_pivots, text_pivots
        self.pivot_key_norms: torch.Tensor | None = None

    def early_layers(self, adapter, encoded, cache):
        """Layers < K, keeping the L1 norms of layer K-1's keys (in the cache) for the pivots."""
        hidden = super().early_layers(adapter, encoded, cache)
        if self.layer > 0:
            self.pivot_key_norms = cache.layers[self.layer - 1].keys.float().abs().sum(dim=(1, 3))
        return hidden

    def choose(self, adapter, encoded, budgets):
        if self.layer == 0:
            key_norms = input_key_norms(adapter, encoded)
        else:
            key_norms = self.pivot_key_norms
            if key_norms is None or key_norms.shape != encoded.input_ids.shape:
                raise ExplainPruneError(
                    "dart chooses from the keys of layer K-1 of the same prefill: run early_layers (or prefill) on this batch first"
                )
        return dart_choices(adapter, encoded, budgets, key_norms, self.image_pivots, self.text_pivots)
