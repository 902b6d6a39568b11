"""How well each model's LLM-input visual tokens carry their own place, per axis: a least-squares linear
read-out of each token's cell centre (x, y as fractions of the side) from the post-merger visual embeddings,
fitted on the tokens of training scenes and scored on held-out ones, overall and on the tokens that cover an
object (the ones a left/above answer reads). A model whose `above` fails where the objects are also apart
sideways may carry height features that are coarse or entangled with width; this shows which.

    .venv/bin/python scripts/position_features.py shipped=embedded seed1=runs/s1 --n 300

Fit: `synthetic:split=train,seed=5,n=N,size=S`; score: `synthetic:split=test,seed=1,n=N,size=S`.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from spatial_errors import load

from explainprune.adapters import get_adapter
from explainprune.data import load_samples, make_inputs
from explainprune.embedded.auxiliary import cell_targets


@torch.no_grad()
def token_features(model, processor, samples, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, (x, y) cell centres, covers-an-object flags) of every visual token of the samples."""
    adapter = get_adapter(model)
    features, places, on_object = [], [], []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        encoded = adapter.encode(dict(make_inputs(processor, batch, device=model.device)))
        for row, sample in enumerate(batch):
            targets = cell_targets(sample.objects, sample.mask)
            positions = encoded.spans[row][0].positions
            features.append(encoded.inputs_embeds[row, positions].float().cpu().numpy())
            places.append(targets["position"].numpy())
            on_object.append(targets["object"].numpy() >= 0)
    return np.concatenate(features), np.concatenate(places), np.concatenate(on_object)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="NAME=DIR (DIR `embedded`: the shipped model)")
    parser.add_argument("--n", type=int, default=300, help="scenes to fit on and scenes to score on")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fit_data = f"synthetic:split=train,seed=5,n={args.n},size={args.size}"
    score_data = f"synthetic:split=test,seed=1,n={args.n},size={args.size}"
    fit_samples, score_samples = load_samples(fit_data), load_samples(score_data)
    print(f"linear read-out of each visual token's cell centre, fitted on {fit_data}, scored on {score_data}:")
    print("root mean square error, fraction of the side\n")
    print("| model | x, all tokens | y, all tokens | x, object tokens | y, object tokens |")
    print("|---|---:|---:|---:|---:|")
    for spec in args.models:
        name, path = spec.split("=", 1)
        model, processor = load(path)
        model.eval()
        features, places, _ = token_features(model, processor, fit_samples)
        design = np.hstack([features, np.ones((len(features), 1))])
        weights, *_ = np.linalg.lstsq(design, places, rcond=None)
        features, places, on_object = token_features(model, processor, score_samples)
        errors = np.hstack([features, np.ones((len(features), 1))]) @ weights - places
        (x_all, y_all), (x_obj, y_obj) = (np.sqrt((errors[rows] ** 2).mean(axis=0)) for rows in (slice(None), on_object))
        print(f"| {name} | {x_all:.3f} | {y_all:.3f} | {x_obj:.3f} | {y_obj:.3f} |")


if __name__ == "__main__":
    main()
