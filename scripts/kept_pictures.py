"""Pictures of what `learned` (top-k) and `learned-coverage` keep on held-out `above` questions where the
first answers wrongly and the second rightly: the predictor's relevance in red, pruned tokens greyed out;
one row per question, the two scorers side by side.

    .venv/bin/python scripts/kept_pictures.py --keep 0.25 --rows 3 --out docs/eval/spatial-coverage/above-kept.png
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from explainprune import Compressor
from explainprune.data import is_correct, load_samples, make_inputs
from explainprune.demo import relevance_picture
from explainprune.loading import load_model

SCORERS = ("learned", "learned-coverage")


def kept_and_answer(compressor, inputs):
    """(kept mask over the image's tokens, the answer on the pruned sequence, the token grid)."""
    encoded = compressor.encode(**inputs)
    prepared = compressor.prepare_encoded(encoded)
    span = encoded.spans[0][0]
    kept = torch.isin(span.positions.to(prepared.kept[0].device), prepared.kept[0])
    output = compressor.model.generate(
        inputs_embeds=prepared.inputs_embeds, attention_mask=prepared.attention_mask,
        position_ids=prepared.position_ids, max_new_tokens=6, do_sample=False,
    )
    answer = compressor.processor.batch_decode(output, skip_special_tokens=True)[0]
    return kept, answer, span.grids[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=float, default=0.25)
    parser.add_argument("--rows", type=int, default=3)
    parser.add_argument("--out", default="docs/eval/spatial-coverage/above-kept.png")
    args = parser.parse_args()
    model, processor = load_model("embedded")
    compressors = {name: Compressor(model, processor, scorer=name, keep_ratio=args.keep) for name in SCORERS}
    rows = []
    for sample in load_samples("synthetic:split=test,seed=0,n=500,size=224"):
        if sample.qtype != "above" or len(rows) == args.rows:
            continue
        inputs = make_inputs(processor, [sample], device=model.device)
        relevance = compressors["learned"].score(compressors["learned"].encode(**inputs))[0][0]
        results = {name: kept_and_answer(c, inputs) for name, c in compressors.items()}
        right = {name: is_correct(answer, sample.answer) for name, (_, answer, _) in results.items()}
        if right["learned"] or not right["learned-coverage"]:
            continue
        print(f"{sample.id}: {sample.question} (truth {sample.answer}); " +
              "; ".join(f"{name}: {answer!r}" for name, (_, answer, _) in results.items()))
        panels = [np.asarray(relevance_picture([sample.image], relevance, kept, grid)) for kept, _, grid in results.values()]
        gap = np.full((panels[0].shape[0], 8, 3), 255, dtype=np.uint8)
        rows.append(np.concatenate([panels[0], gap, panels[1]], axis=1))
    space = np.full((8, rows[0].shape[1], 3), 255, dtype=np.uint8)
    Image.fromarray(np.concatenate([part for row in rows for part in (row, space)][:-1])).save(args.out)
    print(f"wrote {args.out}: left `learned` (top-k), right `learned-coverage`; relevance in red, pruned tokens grey")


if __name__ == "__main__":
    main()
