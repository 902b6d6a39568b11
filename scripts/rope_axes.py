"""Does a model compare two objects' places through M-RoPE phases or through what its visual tokens carry?
Accuracy on the left/above questions of held-out scenes with the visual tokens' M-RoPE positions as the
processor gives them, and with one axis flattened: every visual token of an image gets its image's first
height (`flat-h`) or width (`flat-w`) position id, text positions unchanged. A model that reads the asked
axis from rotary phases loses that type when its axis is flattened and may gain on the other type when the
other axis is (its comparison no longer disturbed by the offset along the other axis); one that reads
places from the tokens' features is barely moved by either.

    .venv/bin/python scripts/rope_axes.py shipped=embedded run=runs/s1 --n 3000

Data as in scripts/spatial_errors.py (`synthetic:split=test,seed=1,n=N,size=S`, left/above only), split
by the two objects' offset along the other axis; answers by greedy decoding of the unchanged model.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from spatial_errors import HELD_OUT, comparison_arguments, models, other_axis_group

from explainprune.adapters import get_adapter
from explainprune.data import is_correct, load_samples, make_inputs
from explainprune.embedded.evaluate import MAX_NEW_TOKENS

FLATTENED_AXIS = {"as given": None, "flat-h": 1, "flat-w": 2}  # index into M-RoPE's (t, h, w) position ids


def flattened(position_ids: torch.Tensor, spans, axis: int | None) -> torch.Tensor:
    """(3, B, L) position ids with `axis` of every image's scored tokens set to that image's smallest."""
    if axis is None:
        return position_ids
    position_ids = position_ids.clone()
    for row, sample_spans in enumerate(spans):
        for span in sample_spans:
            position_ids[axis, row, span.positions] = position_ids[axis, row, span.positions].min()
    return position_ids


@torch.no_grad()
def answers(model, processor, samples, axis: int | None, batch_size: int = 32) -> list[str]:
    adapter = get_adapter(model)
    texts = []
    for start in range(0, len(samples), batch_size):
        encoded = adapter.encode(dict(make_inputs(processor, samples[start : start + batch_size], device=model.device)))
        output = model.generate(
            inputs_embeds=encoded.inputs_embeds, attention_mask=encoded.attention_mask,
            position_ids=flattened(encoded.position_ids, encoded.spans, axis),
            max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
        )  # fmt: skip
        texts += [text.strip() for text in processor.batch_decode(output, skip_special_tokens=True)]
    return texts


def main() -> None:
    args = comparison_arguments(__doc__.splitlines()[0], 3000, "scenes drawn (about a third ask left/above)")
    data = HELD_OUT.format(n=args.n, size=args.size)
    samples = [s for s in load_samples(data) if s.qtype in ("left", "above")]
    columns = [(spec.split("=", 1)[0], condition) for spec in args.models for condition in FLATTENED_AXIS]
    table: dict[tuple[str, str], dict[tuple[str, str], list[bool]]] = defaultdict(dict)
    for name, model, processor in models(args.models):
        for condition, axis in FLATTENED_AXIS.items():
            for sample, answer in zip(samples, answers(model, processor, samples, axis)):
                for group in ("all", other_axis_group(sample, args.size)):
                    table[(sample.qtype, group)].setdefault((name, condition), []).append(is_correct(answer, sample.answer))
    print(f"left/above questions of {data}: accuracy with the visual M-RoPE positions as given or one axis flattened\n")
    print("| type | questions | " + " | ".join(f"{name}: {condition}" for name, condition in columns) + " |")
    print("|---|---|" + "---:|" * len(columns))
    for (qtype, group), hits in sorted(table.items()):
        n = len(hits[columns[0]])
        print(f"| {qtype} | {group} (n={n}) | " + " | ".join(f"{np.mean(hits[column]):.3f}" for column in columns) + " |")


if __name__ == "__main__":
    main()
