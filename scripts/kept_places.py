"""What each scorer keeps, on held-out synthetic scenes: whether every object the question is about keeps
at least one token, the share of the budget on those objects, and how far the kept tokens leave the rest
of the picture uncovered (mean distance, in grid cells, from a cell to its nearest kept token).

    .venv/bin/python scripts/kept_places.py --size 224 --keep 0.25 --scorers learned,gae,learned-coverage,uniform

Object tokens as in `explain/ablation.py` (`object_cells`: the cells an object covers). A table per
question type, then all questions.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch

from explainprune import Compressor
from explainprune.data import load_samples, make_inputs
from explainprune.embedded.auxiliary import cell_targets
from explainprune.embedded.conversations import relevant_objects
from explainprune.loading import load_model
from explainprune.scoring.similarity import token_places


def measures(kept: torch.Tensor, covering: torch.Tensor, relevant: list[int], grid) -> tuple[float, float, float]:
    """(every relevant object hit, share of the kept tokens on relevant objects, mean cell-to-kept distance)."""
    owners = covering[kept]
    every = float(all(bool((owners == o).any()) for o in relevant))
    share = float(torch.isin(owners, torch.tensor(relevant)).float().mean())
    places = token_places([grid]) * min(grid[1:])  # in cells
    gap = torch.cdist(places, places[kept]).amin(dim=1).mean()
    return every, share, float(gap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--keep", type=float, default=0.25)
    parser.add_argument("--scorers", default="learned,gae,learned-coverage,uniform")
    args = parser.parse_args()
    model, processor = load_model("embedded")
    compressors = {name: Compressor(model, processor, scorer=name, keep_ratio=args.keep) for name in args.scorers.split(",")}
    rows: dict[str, dict[str, list[tuple[float, float, float]]]] = defaultdict(lambda: defaultdict(list))
    for sample in load_samples(f"synthetic:split=test,seed=0,n={args.n},size={args.size}"):
        relevant = relevant_objects(sample.qtype, sample.question, sample.objects)
        if not relevant:  # nothing the question is about (e.g. a zero count)
            continue
        covering = cell_targets(sample.objects, sample.mask)["object"]
        for name, compressor in compressors.items():
            encoded = compressor.encode(**make_inputs(processor, [sample], device=model.device))
            (span,), (choice,) = encoded.spans[0], compressor.choose(encoded)[0]
            rows[name][sample.qtype].append(measures(choice.indices.cpu(), covering, relevant, span.grids[0]))
    qtypes = sorted({q for by_type in rows.values() for q in by_type})
    print(f"synthetic:split=test,seed=0,n={args.n},size={args.size}, keep {args.keep}")
    for title, column in (("every question object keeps a token", 0), ("share of the budget on question objects", 1),
                          ("mean distance (cells) from a cell to the nearest kept token", 2)):
        print(f"\n{title}\n| scorer | " + " | ".join(qtypes) + " | all |\n|---|" + "---:|" * (len(qtypes) + 1))
        for name, by_type in rows.items():
            every = [r[column] for q in qtypes for r in by_type[q]]
            cells = [f"{sum(r[column] for r in by_type[q]) / len(by_type[q]):.2f}" for q in qtypes]
            print(f"| `{name}` | " + " | ".join(cells) + f" | {sum(every) / len(every):.2f} |")


if __name__ == "__main__":
    main()
