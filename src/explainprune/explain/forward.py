"""The teacher-forced forward every explainer runs: prompt + answer in one pass, with the
attention maps (and their gradients) of the language model.

The explained quantity S_t of answer token y_t, from the logits z of the row predicting it:
  logit    S_t = z[y_t]
  logprob  S_t = log softmax(z)[y_t] = z[y_t] - logsumexp(z)
  margin   S_t = z[y_t] - max_{k != y_t} z[k]   (to the best other token)
The logit also moves with anything that raises every token's logit alike; the log-probability and
the margin only with what favours y_t over the alternatives.

Eager attention is switched on for the language model only while explaining and restored
afterwards; parameters are frozen meanwhile so no parameter gradient is ever built.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..adapters import Adapter, EncodedBatch
from ..errors import ExplainPruneError
from .answers import select_answer_tokens, stop_token_ids

QUANTITIES = ("logit", "logprob", "margin")


@dataclass
class TeacherForcedBatch:
    """The prompt followed by the answer of each sample (answers right-padded).

    `query_rows[b, t]` is the position whose logits predict answer token `answers[b, t]`;
    `answer_mask[b, t]` is False on answer padding.
    """

    inputs_embeds: torch.Tensor  # (B, N, D)
    attention_mask: torch.Tensor  # (B, N)
    position_ids: torch.Tensor  # (B, N) or (3, B, N)
    answers: torch.Tensor  # (B, T)
    answer_mask: torch.Tensor  # (B, T)
    query_rows: torch.Tensor  # (B, T)

    @property
    def answer_lengths(self) -> torch.Tensor:
        return self.answer_mask.sum(dim=1)


@dataclass
class ExplainedForward:
    """One teacher-forced forward: its input leaf, attention maps and the explained quantities."""

    inputs_embeds: torch.Tensor  # leaf requiring grad when gradients are wanted
    attentions: tuple[torch.Tensor, ...] | None  # per layer (B, heads, N, N)
    query_logits: torch.Tensor  # (B, T, V): logits of the row predicting each answer token
    answer_scores: torch.Tensor  # (B, T): the explained quantity S_t of each answer token
    batch: TeacherForcedBatch

    @property
    def answer_logits(self) -> torch.Tensor:
        """(B, T): the logit of each answer token at its query row."""
        return self.query_logits.gather(-1, self.batch.answers[..., None])[..., 0]


def explained_quantity(logits: torch.Tensor, answers: torch.Tensor, quantity: str) -> torch.Tensor:
    """S_t (see the module docstring) from (B, T, V) query-row logits and (B, T) answer ids: (B, T)."""
    chosen = logits.gather(-1, answers[..., None])[..., 0]
    if quantity == "logit":
        return chosen
    if quantity == "logprob":
        return chosen - torch.logsumexp(logits, dim=-1)
    if quantity == "margin":
        others = logits.scatter(-1, answers[..., None], float("-inf"))
        return chosen - others.max(dim=-1).values
    raise ExplainPruneError(f"unknown explained quantity {quantity!r}; expected one of {', '.join(QUANTITIES)}")


def teacher_forced_batch(
    adapter: Adapter, encoded: EncodedBatch, answers: list[torch.Tensor], answer_tokens: str = "no-eos"
) -> TeacherForcedBatch:
    """Append each sample's answer token ids to its prompt: the tokens `answer_tokens` picks
    (`select_answer_tokens`: all, no-eos or first) of each answer.

    Answer positions continue after the prompt's largest position: at max + 1 on all three
    M-RoPE axes for Qwen, at last + 1 for 1-D positions.
    """
    batch, prompt_length = encoded.attention_mask.shape
    if len(answers) != batch:
        raise ExplainPruneError(f"got {len(answers)} answers for a batch of {batch} prompts")
    if any(a.numel() == 0 for a in answers):
        raise ExplainPruneError("every answer needs at least one token to be explained")
    answers = select_answer_tokens(answers, answer_tokens, stop_token_ids(adapter.model))
    lengths = [int(a.numel()) for a in answers]
    device = encoded.inputs_embeds.device
    width = max(lengths)
    answer_ids = torch.zeros(batch, width, dtype=torch.long, device=device)
    answer_mask = torch.arange(width, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
    for b, answer in enumerate(answers):
        answer_ids[b, : lengths[b]] = answer.flatten().to(device)
    answer_embeds = adapter.model.get_input_embeddings()(answer_ids).to(encoded.inputs_embeds.dtype)

    real = encoded.attention_mask.bool()
    positions = encoded.position_ids
    steps = torch.arange(width, device=positions.device)
    if positions.ndim == 3:
        next_position = torch.stack([positions[:, b][:, real[b]].max() for b in range(batch)]) + 1
        answer_positions = (next_position[:, None] + steps).unsqueeze(0).expand(3, -1, -1)
    else:
        next_position = torch.stack([positions[b][real[b]].max() for b in range(batch)]) + 1
        answer_positions = next_position[:, None] + steps

    last_prompt_row = torch.stack([real[b].nonzero().max() for b in range(batch)])
    query_rows = torch.cat(
        [last_prompt_row[:, None], prompt_length + torch.arange(width - 1, device=device).expand(batch, -1)], dim=1
    )
    return TeacherForcedBatch(
        inputs_embeds=torch.cat([encoded.inputs_embeds, answer_embeds], dim=1),
        attention_mask=torch.cat([encoded.attention_mask, answer_mask.to(encoded.attention_mask.dtype)], dim=1),
        position_ids=torch.cat([positions, answer_positions.to(positions.dtype)], dim=-1),
        answers=answer_ids,
        answer_mask=answer_mask,
        query_rows=query_rows,
    )


@contextmanager
def explaining(model, eager: bool) -> Iterator[None]:
    """Gradients on, parameters frozen and (if `eager`) eager attention in the language model;
    all restored on exit."""
    text_config = model.config.get_text_config()
    previous_implementation = text_config._attn_implementation
    trainable = [p for p in model.parameters() if p.requires_grad]
    try:
        for parameter in trainable:
            parameter.requires_grad_(False)
        if eager and previous_implementation != "eager":
            model.set_attn_implementation({"text_config": "eager"})
            if text_config._attn_implementation != "eager":
                raise ExplainPruneError(
                    f"{type(model).__name__} cannot switch its language model to eager attention, "
                    "which explanations need for attention maps"
                )
        with torch.enable_grad():
            yield
    finally:
        if text_config._attn_implementation != previous_implementation:
            model.set_attn_implementation({"text_config": previous_implementation})
        for parameter in trainable:
            parameter.requires_grad_(True)


def explained_forward(
    model, batch: TeacherForcedBatch, attentions: bool, gradients: bool, quantity: str = "logit"
) -> ExplainedForward:
    """Run the model on the teacher-forced batch; call inside `explaining(model, eager=attentions)`.

    Only the logits of the query rows are computed (`logits_to_keep`).
    """
    embeds = batch.inputs_embeds.detach().requires_grad_(gradients)
    kept_rows, row_index = torch.unique(batch.query_rows, return_inverse=True)
    with torch.set_grad_enabled(gradients):
        output = model(
            inputs_embeds=embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            output_attentions=attentions,
            use_cache=False,
            logits_to_keep=kept_rows,
        )
    if attentions and not output.attentions:
        raise ExplainPruneError(f"{type(model).__name__} returned no attention maps with output_attentions=True")
    samples = torch.arange(batch.answers.shape[0], device=row_index.device)[:, None]
    query_logits = output.logits[samples, row_index].float()
    scores = explained_quantity(query_logits, batch.answers, quantity)
    return ExplainedForward(embeds, output.attentions if attentions else None, query_logits, scores, batch)


def answer_token_gradients(forward: ExplainedForward, wrt: tuple[torch.Tensor, ...]) -> Iterator[tuple[int, tuple]]:
    """For each answer index t: (t, gradients of the explained quantity S_t w.r.t. `wrt`).

    Samples are independent, so the gradient of the batch sum of S_t gives each sample its own.
    """
    batch = forward.batch
    width = batch.answers.shape[1]
    for t in range(width):
        score = forward.answer_scores[:, t][batch.answer_mask[:, t]].sum()
        yield t, torch.autograd.grad(score, wrt, retain_graph=t < width - 1)


def spans_of(encoded: EncodedBatch, values: torch.Tensor) -> list[list[torch.Tensor]]:
    """Per-position values (B, N) -> per sample, per span, the values of its scored tokens."""
    return [
        [values[b, span.positions.to(values.device)].detach().cpu() for span in spans]
        for b, spans in enumerate(encoded.spans)
    ]
