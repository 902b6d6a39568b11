"""DART (Wen et al., 2025, "Stop looking for important tokens in multimodal language models:
duplication matters more"): the duplication-aware choice, and `dart-input`, its input-stage variant.

Official code: ZichenWen1/DART (read from its mirror xqy1111111/DART), `DART.get_retained_image_token`
(Qwen2-VL/Qwen2VL_DART/modeling_qwen2_vl_self.py; same in the LLaVA and Qwen2.5-VL versions), with
`pivot_image_token = pivot_text_token = 4`. Pivots: the 4 visual and the 4 text tokens (after the
image) with the largest L1 norm of their keys (post-RoPE, all heads). Each pivot then keeps the not
yet kept visual tokens least cosine-similar to it, similarity taken on the final-norm'ed states; the
text pivots themselves are not counted. The published method prunes inside the LLM at layer 2 with
layer 1's keys (`explainprune.inllm.dart`); `dart-input` applies the same choice to the LLM's input:
layer 0's keys computed from the input embeddings, similarities of the input embeddings, and the
unchanged model then runs on the shortened sequence.

Adaptations: the official per-pivot quota int(n * keep / 8) keeps 4 + 8 * quota tokens, not the
budget; here the budget k is exact: the 4 visual pivots (fewer if k < 4) plus k - 4 tokens shared
over the pivots as evenly as possible. Pivots are visited in sequence order (the official code visits
a Python set). Spans (images, videos) are pruned separately with the same text pivots.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..adapters import Adapter, EncodedBatch
from ..errors import ExplainPruneError
from ..selection import Choice, choices_per_span
from .base import Scorer, register

PIVOTS = 4  # official pivot_image_token = pivot_text_token = 4


def even_shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` integers differing by at most one, larger ones first."""
    return [total // parts + (i < total % parts) for i in range(parts)] if parts else []


def duplication_aware_choice(
    states: torch.Tensor,
    key_norms: torch.Tensor,
    positions: torch.Tensor,
    text_rows: torch.Tensor,
    k: int,
    image_pivots: int = PIVOTS,
    text_pivots: int = PIVOTS,
) -> torch.Tensor:
    """`k` indices into `positions` (one span's sequence positions) chosen by DART.

    `states` (L, D) are the normed hidden states and `key_norms` (L,) the pivot key norms of one
    sample; `text_rows` its text positions after the visual tokens.
    """
    positions, text_rows = positions.to(states.device), text_rows.to(states.device)
    visual = F.normalize(states[positions].float(), dim=-1)
    image_pivot = torch.topk(key_norms[positions].float(), min(image_pivots, k)).indices
    text_pivot = text_rows[torch.topk(key_norms[text_rows].float(), min(text_pivots, text_rows.numel())).indices]
    pivots = sorted([(int(positions[i]), visual[i]) for i in image_pivot] + [
        (int(row), F.normalize(states[row].float(), dim=-1)) for row in text_pivot
    ], key=lambda pivot: pivot[0])
    available = torch.ones(positions.numel(), dtype=torch.bool, device=states.device)
    available[image_pivot] = False
    chosen = [image_pivot]
    for (_, pivot), quota in zip(pivots, even_shares(k - image_pivot.numel(), len(pivots))):
        if quota:
            similarity = (visual @ pivot).masked_fill(~available, float("inf"))
            picked = torch.topk(-similarity, quota).indices
            available[picked] = False
            chosen.append(picked)
    return torch.cat(chosen).cpu()


def dart_choices(
    adapter: Adapter, encoded: EncodedBatch, budgets, key_norms: torch.Tensor, image_pivots: int, text_pivots: int
) -> list[list[Choice]]:
    """DART's choice for every span; `key_norms` (B, L) rank the pivots, `encoded.inputs_embeds` are
    the states whose (final-norm'ed) similarities decide the duplicates."""
    states = adapter.language_model.norm(encoded.inputs_embeds)

    def choose_span(b, s, span, k):
        rows = encoded.instruction_rows(b)
        return Choice(duplication_aware_choice(states[b], key_norms[b], span.positions, rows, k, image_pivots, text_pivots))

    return choices_per_span(encoded.spans, budgets, choose_span)


def check_pivot_counts(name: str, image_pivots, text_pivots) -> None:
    for option, value in (("image_pivots", image_pivots), ("text_pivots", text_pivots)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ExplainPruneError(f"{name} option {option} must be an integer >= 0, got {value!r}")


def input_key_norms(adapter: Adapter, encoded: EncodedBatch) -> torch.Tensor:
    """(B, L) L1 norms of layer 0's rotated keys (all heads) computed from `encoded.inputs_embeds`."""
    first_row = torch.zeros(1, dtype=torch.long, device=encoded.inputs_embeds.device)  # queries are not needed
    norms = []
    for b in range(encoded.batch_size):
        positions = encoded.position_ids[:, b : b + 1] if encoded.position_ids.ndim == 3 else encoded.position_ids[b : b + 1]
        _, key, _ = adapter.attention_inputs(0, encoded.inputs_embeds[b : b + 1], positions, first_row)
        norms.append(key[0].float().abs().sum(dim=(0, 2)))
    return torch.stack(norms)


@register
class DARTInput(Scorer):
    """DART's choice at layer 0: the whole prefill runs on the kept tokens."""

    name = "dart-input"

    def __init__(self, image_pivots: int = PIVOTS, text_pivots: int = PIVOTS):
        check_pivot_counts(self.name, image_pivots, text_pivots)
        self.image_pivots, self.text_pivots = image_pivots, text_pivots

    def choose(self, adapter, encoded, budgets):
        key_norms = input_key_norms(adapter, encoded)
        return dart_choices(adapter, encoded, budgets, key_norms, self.image_pivots, self.text_pivots)
