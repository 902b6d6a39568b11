"""The model's own answers: greedy generation on the full (unpruned) prompt."""

from __future__ import annotations

import torch

from ..adapters import EncodedBatch


def stop_token_ids(model) -> torch.Tensor:
    """End-of-sequence and padding ids of the model's generation config."""
    config = model.generation_config
    eos = config.eos_token_id
    ids = [*(eos if isinstance(eos, list) else [eos]), config.pad_token_id]
    return torch.tensor([i for i in ids if i is not None], dtype=torch.long)


def answer_tokens(new_tokens: torch.Tensor, stop_ids: torch.Tensor) -> torch.Tensor:
    """Generated ids before the first stop token; the first id alone if the model stopped at once."""
    stops = torch.isin(new_tokens.cpu(), stop_ids).nonzero().flatten()
    end = int(stops[0]) if stops.numel() else new_tokens.numel()
    return new_tokens[: max(end, 1)]


@torch.no_grad()
def generate_answers(model, encoded: EncodedBatch, max_new_tokens: int) -> list[torch.Tensor]:
    """Per sample, the answer token ids the model generates greedily for the unpruned prompt."""
    new_tokens = model.generate(
        inputs_embeds=encoded.inputs_embeds,
        attention_mask=encoded.attention_mask,
        position_ids=encoded.position_ids,
        max_new_tokens=max_new_tokens,
        do_sample=False,
    )
    stop_ids = stop_token_ids(model)
    return [answer_tokens(row, stop_ids) for row in new_tokens]
