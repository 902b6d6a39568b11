"""Where layer-0 attention points: recall of the question's object tokens in the top 25% of each
predictor input channel, per question type (held-out synthetic scenes of the embedded model).

    .venv/bin/python scripts/row_peak_recall.py --n 240 --size 224

Channels (`scoring.learned.span_features`): per head the row-mean (the paper's input: attention
averaged over the instruction rows) and the row-peak (max over the rows of each row's attention
renormalised over the image's tokens), and both averaged over heads. Object tokens and recall as
in `explain/ablation.py` (`object_cells`, `location`).
"""

from __future__ import annotations

import argparse

import torch

from explainprune.adapters import get_adapter
from explainprune.data import load_samples, make_inputs
from explainprune.explain.ablation import location, object_cells
from explainprune.loading import load_model
from explainprune.scoring.learned import span_features


def channels(features: torch.Tensor) -> dict[str, torch.Tensor]:
    """Named (n_tokens,) channels of one span's (n_tokens, 2 * heads) features."""
    heads = features.shape[1] // 2
    row_mean, row_peak = features[:, :heads], features[:, heads:]
    named = {"row-mean, head mean": row_mean.mean(1), "row-peak, head mean": row_peak.mean(1)}
    for head in range(heads):
        named[f"row-mean, head {head}"] = row_mean[:, head]
        named[f"row-peak, head {head}"] = row_peak[:, head]
    return named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    model, processor = load_model("embedded")
    adapter = get_adapter(model)
    recalls: dict[str, dict[str, list[float]]] = {}
    for sample in load_samples(f"synthetic:split=test,seed=0,n={args.n},size={args.size}"):
        cells = object_cells(sample)
        if cells is None:  # no object the question is about (e.g. a zero count)
            continue
        with torch.no_grad():
            encoded = adapter.encode(dict(make_inputs(processor, [sample], device=model.device)))
            (features,) = span_features(adapter, encoded)[0]
        for name, scores in channels(features).items():
            recalls.setdefault(name, {}).setdefault(sample.qtype, []).append(location(scores, cells)[1])
    qtypes = sorted({qtype for by_type in recalls.values() for qtype in by_type})
    print(f"synthetic:split=test,seed=0,n={args.n},size={args.size}: recall of the object tokens in the top 25%")
    print("| channel | " + " | ".join(qtypes) + " | all |")
    print("|---|" + "---:|" * (len(qtypes) + 1))
    for name, by_type in recalls.items():
        every = [value for qtype in qtypes for value in by_type[qtype]]
        cells_text = [f"{sum(by_type[q]) / len(by_type[q]):.2f}" for q in qtypes]
        print(f"| {name} | " + " | ".join(cells_text) + f" | {sum(every) / len(every):.2f} |")


if __name__ == "__main__":
    main()
