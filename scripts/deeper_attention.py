"""Would deeper layers' attention choose better at the LLM input? Instruction-row attention at decoder layer N
(N = 0 is the `layer0` scorer), averaged over heads and rows (`--rows mean`) or the row-peak channel
(`--rows peak`, `scoring.learned.row_mean_and_peak`), used as a training-free input-stage scorer: the
scores are read from a forward over the full prompt up to layer N, then the unchanged model runs on the
kept tokens from the start, as for every input-stage scorer.

    .venv/bin/python scripts/deeper_attention.py eval --model embedded --data synthetic:split=test,seed=0,n=500,size=224 \
        --keep 1,0.5,0.25,0.1 --scorers attention-at-layer --option attention-at-layer.layer=1

Layer N's input is caught by a forward pre-hook on that layer, which ends the forward there.
"""

from __future__ import annotations

import sys

import torch

from explainprune.attention import attention_rows
from explainprune.scoring.base import Scorer, register
from explainprune.scoring.learned import row_mean_and_peak


class _LayerInputCaught(Exception):
    pass


def layer_input(adapter, encoded, layer_index: int) -> torch.Tensor:
    """The hidden states entering decoder layer `layer_index` (B, L, D), from a forward that stops there."""
    if layer_index == 0:
        return encoded.inputs_embeds
    language_model = adapter.language_model
    caught = {}

    def catch(module, args, kwargs):
        caught["hidden_states"] = args[0] if args else kwargs["hidden_states"]
        raise _LayerInputCaught

    handle = language_model.layers[layer_index].register_forward_pre_hook(catch, with_kwargs=True)
    try:
        language_model(inputs_embeds=encoded.inputs_embeds, attention_mask=encoded.attention_mask,
                       position_ids=encoded.position_ids, use_cache=False)
    except _LayerInputCaught:
        pass
    finally:
        handle.remove()
    return caught["hidden_states"]


@register
class AttentionAtLayer(Scorer):
    name = "attention-at-layer"

    def __init__(self, layer: int = 1, rows: str = "mean"):
        self.layer, self.rows = int(layer), rows

    def score(self, adapter, encoded):
        hidden = layer_input(adapter, encoded, self.layer)
        rows = [encoded.instruction_rows(b) for b in range(encoded.batch_size)]
        attention = attention_rows(adapter, self.layer, hidden, encoded.position_ids, encoded.attention_mask, rows)
        scores = []
        for probabilities, spans in zip(attention, encoded.spans):
            sample = []
            for span in spans:
                features = row_mean_and_peak(probabilities.float()[:, :, span.positions.to(probabilities.device)])
                heads = features.shape[1] // 2
                sample.append((features[:, :heads] if self.rows == "mean" else features[:, heads:]).mean(dim=1))
            scores.append(sample)
        return scores


if __name__ == "__main__":
    from explainprune.cli import main

    sys.exit(main(sys.argv[1:]))
