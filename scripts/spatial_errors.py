"""Accuracy on the left/above questions of held-out scenes, split by where the two objects lie: their
centre gap along the asked axis, their offset along the other axis, and the answer. Compares models
given as NAME=DIR (`embedded` for the shipped one) on the same questions; prints one table.

    .venv/bin/python scripts/spatial_errors.py shipped=embedded run=runs/mix-s0 --n 3000

The data: `synthetic:split=test,seed=1,n=N,size=S` (held out, other scenes than the reported test split
with seed 0), its left/above questions only; gaps are fractions of the side.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from explainprune import load_embedded
from explainprune.data import is_correct, load_samples
from explainprune.data.synthetic import centre
from explainprune.embedded.conversations import relevant_objects
from explainprune.embedded.evaluate import predict_answers

HELD_OUT = "synthetic:split=test,seed=1,n={n},size={size}"  # other scenes than the reported test split (seed 0)
GAP_EDGES = (0.25, 0.35, 0.5)  # lower edges of the asked-axis gap bins: questions need a gap of at least 0.25
OTHER_AXIS_SPLIT = 0.15


def centre_offsets(sample, size: int) -> tuple[float, float]:
    """(gap along the asked axis, offset along the other axis) of the question's two objects."""
    first, second = (sample.objects[i] for i in relevant_objects(sample.qtype, sample.question, sample.objects))
    axis = 0 if sample.qtype == "left" else 1
    offsets = [abs(b - a) / size for a, b in zip(centre(first), centre(second))]
    return offsets[axis], offsets[1 - axis]


def other_axis_group(sample, size: int) -> str:
    other = centre_offsets(sample, size)[1]
    return f"other axis {'<' if other < OTHER_AXIS_SPLIT else '>='} {OTHER_AXIS_SPLIT}"


def groups_of(sample, size: int) -> list[str]:
    low = max(edge for edge in GAP_EDGES if centre_offsets(sample, size)[0] >= edge)
    return [f"gap {low:.2f}+", other_axis_group(sample, size), f"answer {sample.answer}"]


def comparison_arguments(description: str, n: int, n_help: str) -> argparse.Namespace:
    """The command line these scripts share (models as NAME=DIR, --n, --size, --threads), thread count set."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("models", nargs="+", help="NAME=DIR (DIR `embedded`: the shipped model)")
    parser.add_argument("--n", type=int, default=n, help=n_help)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args


def models(specs: list[str]):
    """(name, model in eval mode, processor) of each NAME=DIR, loaded one at a time."""
    for spec in specs:
        name, path = spec.split("=", 1)
        if path == "embedded":
            model, processor = load_embedded()
        else:
            model, processor = AutoModelForImageTextToText.from_pretrained(path), AutoProcessor.from_pretrained(path)
        yield name, model.eval(), processor


def main() -> None:
    args = comparison_arguments(__doc__.splitlines()[0], 3000, "scenes drawn (about a third ask left/above)")
    data = HELD_OUT.format(n=args.n, size=args.size)
    samples = [s for s in load_samples(data) if s.qtype in ("left", "above")]
    table: dict[tuple[str, str], dict[str, list[bool]]] = defaultdict(dict)
    names = []
    for name, model, processor in models(args.models):
        names.append(name)
        for sample, prediction in zip(samples, predict_answers(model, processor, samples, progress=False)):
            for group in ["all"] + groups_of(sample, args.size):
                table[(sample.qtype, group)].setdefault(name, []).append(is_correct(prediction, sample.answer))
    print(f"left/above questions of {data}: accuracy (n)\n")
    print("| type | questions | " + " | ".join(names) + " |")
    print("|---|---|" + "---:|" * len(names))
    for (qtype, group), hits in sorted(table.items()):
        n = len(hits[names[0]])
        print(f"| {qtype} | {group} (n={n}) | " + " | ".join(f"{np.mean(hits[name]):.3f}" for name in names) + " |")


if __name__ == "__main__":
    main()
