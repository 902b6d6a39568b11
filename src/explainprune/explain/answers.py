"""The model's own answers: greedy generation on the full (unpruned) prompt, and which of their
tokens an explanation explains.

Answer token choices (`ANSWER_TOKENS`), for an answer y_1 .. y_T that may end in the end-of-answer
(stop) token the model generated:
  all     every token, the end-of-answer token included (every generation step, as in the paper)
  no-eos  the tokens before the first stop token (at least the first token)
  first   y_1 alone
"""

from __future__ import annotations

import torch

from ..adapters import EncodedBatch
from ..errors import ExplainPruneError
from ..prune import gather_batch

ANSWER_TOKENS = ("all", "no-eos", "first")


def stop_token_ids(model) -> torch.Tensor:
    """End-of-sequence and padding ids of the model's generation config."""
    config = model.generation_config
    eos = config.eos_token_id
    ids = [*(eos if isinstance(eos, list) else [eos]), config.pad_token_id]
    return torch.tensor([i for i in ids if i is not None], dtype=torch.long)


def answer_tokens(new_tokens: torch.Tensor, stop_ids: torch.Tensor, keep_stop: bool = False) -> torch.Tensor:
    """Generated ids before the first stop token (and that stop token if `keep_stop`); the first id
    alone if the model stopped at once."""
    stops = torch.isin(new_tokens.cpu(), stop_ids).nonzero().flatten()
    end = int(stops[0]) + int(keep_stop) if stops.numel() else new_tokens.numel()
    return new_tokens[: max(end, 1)]


def select_answer_tokens(answers: list[torch.Tensor], which: str, stop_ids: torch.Tensor) -> list[torch.Tensor]:
    """The tokens of each answer to explain (see the module docstring); a prefix of each answer."""
    if which == "all":
        return answers
    if which == "no-eos":
        return [answer_tokens(answer, stop_ids) for answer in answers]
    if which == "first":
        return [answer[:1] for answer in answers]
    raise ExplainPruneError(f"unknown answer tokens {which!r}; expected one of {', '.join(ANSWER_TOKENS)}")


@torch.no_grad()
def generate_answers(model, encoded: EncodedBatch, max_new_tokens: int, keep_stop: bool = False) -> list[torch.Tensor]:
    """Per sample, the answer token ids the model generates greedily for the unpruned prompt
    (ending with the end-of-answer token it generated if `keep_stop`); the prompts are left-padded
    first, as generation needs, whatever their padding side."""
    real_positions = [mask.bool().nonzero().flatten().cpu() for mask in encoded.attention_mask]
    new_tokens = model.generate(**gather_batch(encoded, real_positions), max_new_tokens=max_new_tokens, do_sample=False)
    stop_ids = stop_token_ids(model)
    return [answer_tokens(row, stop_ids, keep_stop) for row in new_tokens]
