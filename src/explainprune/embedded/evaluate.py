"""Greedy-decoding exact-match accuracy of a vision-language model on samples."""

from __future__ import annotations

from collections import defaultdict

import torch
from tqdm import tqdm

from explainprune.data import Sample, is_correct, make_inputs

MAX_NEW_TOKENS = 8


@torch.no_grad()
def predict_answers(model, processor, samples: list[Sample], batch_size: int = 32, progress: bool = True) -> list[str]:
    """Greedy answers, batching samples of equal image size together to avoid padding waste."""
    order = sorted(range(len(samples)), key=lambda i: (samples[i].modality, samples[i].frame_size, len(samples[i].video or ())))
    predictions: list[str] = [""] * len(samples)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="evaluating", disable=not progress, leave=False):
        inputs = make_inputs(processor, [samples[i] for i in batch], device=model.device)
        output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        texts = processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        for i, text in zip(batch, texts):
            predictions[i] = text.strip()
    return predictions


def evaluate_accuracy(model, processor, samples: list[Sample], batch_size: int = 32, progress: bool = True) -> dict:
    """Overall and per-question-type exact-match accuracy: {"accuracy", "n", "per_qtype": {qtype: accuracy}}."""
    was_training = model.training
    model.eval()
    predictions = predict_answers(model, processor, samples, batch_size, progress)
    model.train(was_training)
    hits: dict[str, list[bool]] = defaultdict(list)
    for sample, prediction in zip(samples, predictions):
        hits[sample.qtype or "all"].append(is_correct(prediction, sample.answer))
    correct = [hit for values in hits.values() for hit in values]
    return {
        "accuracy": sum(correct) / max(len(correct), 1),
        "n": len(correct),
        "per_qtype": {qtype: round(sum(v) / len(v), 4) for qtype, v in sorted(hits.items())},
    }
