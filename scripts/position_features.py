"""How well each model's LLM-input visual tokens carry their own place, per axis: a least-squares linear
read-out of each token's cell centre (x, y as fractions of the side) from the post-merger visual embeddings,
fitted on the tokens of training scenes and scored on held-out ones, overall and on the tokens that cover an
object (the ones a left/above answer reads); then the same read-out of both asked objects' centres from the
answer row (the last prompt position) of each decoder layer's output on left/above questions. A model whose
`above` fails where the objects are also apart sideways may carry height features that are coarse or
entangled with width, or lose them on the way to the answer row; this shows where.

    .venv/bin/python scripts/position_features.py shipped=embedded seed1=runs/s1 --n 300

Fit: `synthetic:split=train,seed=5,n=N,size=S`; score: `synthetic:split=test,seed=1,n=N,size=S` (the
answer-row read-out on their left/above questions, ridge-regularised: there are fewer questions than tokens).
"""

from __future__ import annotations

import numpy as np
import torch
from spatial_errors import HELD_OUT, comparison_arguments, models

from explainprune.adapters import get_adapter
from explainprune.data import load_samples, make_inputs
from explainprune.data.synthetic import centre
from explainprune.embedded.auxiliary import cell_targets
from explainprune.embedded.conversations import relevant_objects

RIDGE = 1e-3  # times the mean squared feature norm, for the answer-row read-out


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


@torch.no_grad()
def answer_rows(model, processor, samples, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(each decoder layer's output at the answer row: (layers, questions, D), the two asked objects' centres
    (x, y, x, y as fractions of the side)) of the samples' left/above questions."""
    adapter = get_adapter(model)
    spatial = [s for s in samples if s.qtype in ("left", "above")]
    hidden, places = [], []
    for start in range(0, len(spatial), batch_size):
        batch = spatial[start : start + batch_size]
        encoded = adapter.encode(dict(make_inputs(processor, batch, device=model.device)))
        output = model(
            inputs_embeds=encoded.inputs_embeds, attention_mask=encoded.attention_mask,
            position_ids=encoded.position_ids, output_hidden_states=True,
        )  # fmt: skip
        hidden.append(torch.stack(output.hidden_states[1:])[:, :, -1].float().cpu().numpy())  # left-padded
        for sample in batch:
            asked = (sample.objects[i] for i in relevant_objects(sample.qtype, sample.question, sample.objects))
            places.append([value / sample.frame_size[0] for obj in asked for value in centre(obj)])
    return np.concatenate(hidden, axis=1), np.array(places)


def read_out(fit_x: np.ndarray, fit_y: np.ndarray, score_x: np.ndarray, score_y: np.ndarray, ridge: float) -> np.ndarray:
    """Per-output root mean square error on the scored rows of a ridge least-squares read-out with a bias."""
    design = np.hstack([fit_x, np.ones((len(fit_x), 1))])
    penalty = ridge * (fit_x**2).sum(axis=1).mean() * np.eye(design.shape[1])
    weights = np.linalg.solve(design.T @ design + penalty, design.T @ fit_y)
    errors = np.hstack([score_x, np.ones((len(score_x), 1))]) @ weights - score_y
    return np.sqrt((errors**2).mean(axis=0))


def main() -> None:
    args = comparison_arguments(__doc__.splitlines()[0], 300, "scenes to fit on and scenes to score on")
    fit_data = f"synthetic:split=train,seed=5,n={args.n},size={args.size}"
    score_data = HELD_OUT.format(n=args.n, size=args.size)
    fit_samples, score_samples = load_samples(fit_data), load_samples(score_data)
    print(f"linear read-out of each visual token's cell centre, fitted on {fit_data}, scored on {score_data}:")
    print("root mean square error, fraction of the side\n")
    print("| model | x, all tokens | y, all tokens | x, object tokens | y, object tokens |")
    print("|---|---:|---:|---:|---:|")
    rows = {}
    for name, model, processor in models(args.models):
        fit_features, fit_places, _ = token_features(model, processor, fit_samples)
        features, places, on_object = token_features(model, processor, score_samples)
        x_all, y_all = read_out(fit_features, fit_places, features, places, ridge=0.0)
        x_obj, y_obj = read_out(fit_features, fit_places, features[on_object], places[on_object], ridge=0.0)
        print(f"| {name} | {x_all:.3f} | {y_all:.3f} | {x_obj:.3f} | {y_obj:.3f} |")
        rows[name] = (answer_rows(model, processor, fit_samples), answer_rows(model, processor, score_samples))
    print("\nanswer row of left/above questions, read-out of the two asked objects' centres: root mean square error\n")
    print("| model | layer | first x | first y | second x | second y |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, ((fit_hidden, fit_places), (hidden, places)) in rows.items():
        for layer in range(len(hidden)):
            errors = read_out(fit_hidden[layer], fit_places, hidden[layer], places, RIDGE)
            print(f"| {name} | {layer} | " + " | ".join(f"{e:.3f}" for e in errors) + " |")


if __name__ == "__main__":
    main()
