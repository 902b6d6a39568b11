"""GAE, the generic attention explainability of Chefer et al. (2021), for the model's own answer.

Per answer token t, with S_t its explained quantity (`forward.QUANTITIES`: logit, logprob, margin),
A_l the attention probabilities of layer l, (B, heads, N, N), and G_l = dS_t/dA_l:

  A_bar_l = agg over heads of relu(W_l),  R = I,  R <- R + A_bar_l R  in layer order,

and the relevance of token j for answer token t is R[q_t, j], q_t the row predicting it; a token's
relevance is the mean over the explained answer tokens (`answers.ANSWER_TOKENS`). The weighting W_l
(`gradient`):
  probs    W = A * G                      (Chefer et al. 2021 and the paper)
  centred  W = A * (G - sum_k A_k G_k)    (sum over the row's keys k) = dS/dZ, the gradient w.r.t.
           the pre-softmax scores Z (A = softmax(Z) row-wise). A component of G that is constant
           along a row changes nothing (each row of A sums to 1), yet under `probs` relu(A * G)
           turns it into relevance wherever attention is large (or zeroes a saturated head's
           reads when it is negative); centring removes exactly that component.
Head aggregation (`heads`): mean (the paper), sum or max over heads of relu(W).

`gae` propagates only the needed row, from the last layer down (r <- r + r A_bar_l): O(N^2) per
layer. `gae_full_matrix` builds R in full (O(N^3) per layer) and is kept as the reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch

from ..adapters import Adapter, EncodedBatch
from ..errors import ExplainPruneError
from .answers import ANSWER_TOKENS
from .forward import (
    QUANTITIES,
    answer_token_gradients,
    explained_forward,
    explaining,
    spans_of,
    teacher_forced_batch,
)

GRADIENTS = ("probs", "centred")
HEADS = ("mean", "sum", "max")
CHOICES = {"quantity": QUANTITIES, "gradient": GRADIENTS, "heads": HEADS, "answer_tokens": ANSWER_TOKENS}


@dataclass(frozen=True)
class GAEVariant:
    """One GAE recipe: what is explained, how attention is weighted and aggregated, which tokens."""

    quantity: str = "logprob"
    gradient: str = "centred"
    heads: str = "mean"
    answer_tokens: str = "no-eos"

    def __post_init__(self):
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ExplainPruneError(f"GAE {name} must be one of {', '.join(allowed)}, got {value!r}")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def label(self) -> str:
        """A compact name, e.g. 'logprob/centred/mean/no-eos'."""
        return "/".join(getattr(self, f.name) for f in fields(self))


PRESETS = {
    "default": GAEVariant(),
    "paper": GAEVariant(quantity="logit", gradient="probs", heads="mean", answer_tokens="all"),
}


def gae_variant(preset: str | GAEVariant = "default", **overrides: str | None) -> GAEVariant:
    """A preset (`PRESETS`: default, paper) or a given variant with some fields replaced
    (None values are ignored)."""
    if isinstance(preset, GAEVariant):
        base = preset
    elif isinstance(preset, str) and preset in PRESETS:
        base = PRESETS[preset]
    else:
        raise ExplainPruneError(f"unknown GAE variant {preset!r}; presets: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(CHOICES))
    if unknown:
        raise ExplainPruneError(f"unknown GAE option(s) {unknown}; options: {', '.join(CHOICES)}")
    return replace(base, **{name: value for name, value in overrides.items() if value is not None})


def attention_weighting(attention: torch.Tensor, gradient: torch.Tensor, mode: str = "centred") -> torch.Tensor:
    """W per head (module docstring): A * G (`probs`) or A * (G - sum_k A_k G_k) (`centred`)."""
    attention, gradient = attention.float(), gradient.float()
    if mode == "centred":
        gradient = gradient - (attention * gradient).sum(dim=-1, keepdim=True)
    return attention * gradient


def gradient_weighted_attention(
    attention: torch.Tensor, gradient: torch.Tensor, variant: GAEVariant = PRESETS["default"]
) -> torch.Tensor:
    """A_bar = agg over heads of relu(W) (module docstring): (B, heads, N, N) -> (B, N, N)."""
    weighted = attention_weighting(attention, gradient, variant.gradient).clamp_(min=0)
    if variant.heads == "mean":
        return weighted.mean(dim=1)
    if variant.heads == "sum":
        return weighted.sum(dim=1)
    return weighted.amax(dim=1)


def gae(
    adapter: Adapter, encoded: EncodedBatch, answers: list[torch.Tensor], variant: GAEVariant = PRESETS["default"]
) -> list[list[torch.Tensor]]:
    """GAE relevance of each scored visual token for the answer, by row propagation.

    `answers` as from `generate_answers(..., keep_stop=True)`; `variant.answer_tokens` picks the
    tokens explained."""
    return _explain(adapter, encoded, answers, [variant], _propagate_rows)[0]


def gae_variants(
    adapter: Adapter, encoded: EncodedBatch, answers: list[torch.Tensor], variants: list[GAEVariant]
) -> list[list[list[torch.Tensor]]]:
    """`gae` for each of several variants, in order; one forward and backward per answer token
    serves every variant with the same quantity and answer tokens."""
    results: list = [None] * len(variants)
    groups: dict[tuple[str, str], list[int]] = {}
    for index, variant in enumerate(variants):
        groups.setdefault((variant.quantity, variant.answer_tokens), []).append(index)
    for indices in groups.values():
        relevance = _explain(adapter, encoded, answers, [variants[i] for i in indices], _propagate_rows)
        for index, values in zip(indices, relevance):
            results[index] = values
    return results


def gae_full_matrix(
    adapter: Adapter, encoded: EncodedBatch, answers: list[torch.Tensor], variant: GAEVariant = PRESETS["default"]
) -> list[list[torch.Tensor]]:
    """The same relevance computed with full N x N relevance matrices (reference, slow)."""
    return _explain(adapter, encoded, answers, [variant], _propagate_matrices)[0]


def _explain(adapter, encoded, answers, variants, propagate) -> list[list[list[torch.Tensor]]]:
    """Relevance of each variant (all with the quantity and answer tokens of the first)."""
    first = variants[0]
    batch = teacher_forced_batch(adapter, encoded, answers, first.answer_tokens)
    with explaining(adapter.model, eager=True):
        forward = explained_forward(adapter.model, batch, attentions=True, gradients=True, quantity=first.quantity)
        relevance = torch.zeros(len(variants), *batch.inputs_embeds.shape[:2])
        for t, gradients in answer_token_gradients(forward, forward.attentions):
            with torch.no_grad():  # the propagation itself must not grow the autograd graph
                for index, variant in enumerate(variants):
                    layers = [gradient_weighted_attention(a, g, variant) for a, g in zip(forward.attentions, gradients)]
                    rows = propagate(layers, batch.query_rows[:, t])
                    relevance[index] += rows.cpu() * batch.answer_mask[:, t, None].cpu()
            del gradients, layers  # free this token's gradients before the next backward
    relevance /= batch.answer_lengths.cpu()[:, None]
    return [spans_of(encoded, values) for values in relevance]


def _propagate_rows(layers: list[torch.Tensor], query_rows: torch.Tensor) -> torch.Tensor:
    """Row `query_rows[b]` of R for each sample from the layers' A_bar, last layer down: (B, N)."""
    batch, length, _ = layers[0].shape
    row = torch.zeros(batch, 1, length, device=layers[0].device)
    row[torch.arange(batch), 0, query_rows] = 1.0
    for weighted in reversed(layers):
        row = row + torch.bmm(row, weighted)
    return row[:, 0]


def _propagate_matrices(layers: list[torch.Tensor], query_rows: torch.Tensor) -> torch.Tensor:
    """The full R from the layers' A_bar, then its row `query_rows[b]` for each sample: (B, N)."""
    batch, length, _ = layers[0].shape
    relevance = torch.eye(length, device=layers[0].device).expand(batch, -1, -1)
    for weighted in layers:
        relevance = relevance + torch.bmm(weighted, relevance)
    return relevance[torch.arange(batch), query_rows]
