"""`explainprune collect`: training data for the relevance predictor.

For each sample the full model answers greedily; with ground truth, wrongly answered samples are
dropped (counted in the manifest). For each image or clip of the kept samples one record is written: the
layer-0 features of its scored tokens (the predictor's input), the explainer's map of the answer,
preprocessed into a target, and the token grids ((t, h, w): a clip's grid has t > 1, the input of a video
predictor). The data must be of one modality. Rerun on the same directory, it resumes: shards
are written atomically and samples already stored or dropped are skipped.

With the `gae` explainer the GAE variant (explain/gae.py) is the `default` preset unless `variant`
(a preset: default, paper) or the single options (quantity, gradient, heads, answer_tokens) say
otherwise; the manifest records it under `explainer_options`.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from .adapters import Adapter, EncodedBatch, get_adapter
from .data import is_correct, load_samples, make_inputs
from .data.sample import Sample
from .errors import ExplainPruneError
from .explain import EXPLAINERS, gae_variant, generate_answers, preprocess_target
from .explain.answers import select_answer_tokens, stop_token_ids
from .loading import load_model
from .predictor import Record, ShardWriter
from .predictor.shards import MANIFEST_NAME
from .scoring.learned import span_features

def collect(
    model,
    processor,
    data_spec: str,
    out_dir: str | Path,
    limit: int | None = None,
    explainer: str = "gae",
    batch_size: int = 4,
    max_new_tokens: int = 8,
    only_correct: bool = True,
    shard_size: int = 256,
    on_batch: Callable[[list[str]], None] | None = None,
    variant: str | None = None,
    quantity: str | None = None,
    gradient: str | None = None,
    heads: str | None = None,
    answer_tokens: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "fp32",
    attn_implementation: str | None = None,
) -> dict:
    """Collect records for the first `limit` samples of `data_spec` into `out_dir`; returns the manifest.

    `model` is a model (used on its own device and dtype), or a directory or 'embedded' (then
    `processor` may be None, and it is loaded on `device` in `dtype`). `on_batch` is called with
    the sample ids of each finished batch. `variant` (a preset) and the single options
    (None: the preset's) choose the GAE variant; they apply to the gae explainer only.
    """
    explain, options = chosen_explainer(explainer, variant, quantity, gradient, heads, answer_tokens)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model_name = getattr(model, "name_or_path", None) or type(model).__name__
    if isinstance(model, (str, Path)):
        model_name = str(model)
        model, loaded_processor = load_model(model_name, device, dtype, attn_implementation)
        processor = processor or loaded_processor
    if processor is None:
        raise ValueError("a processor is required with a model instance")
    adapter = get_adapter(model)
    samples = load_samples(data_spec)[:limit]
    modalities = sorted({s.modality for s in samples})
    if len(modalities) != 1:
        raise ValueError(f"{data_spec}: collect needs samples of one modality (a predictor is per modality), got {modalities}")
    modality = modalities[0]
    manifest = {
        "fingerprint": adapter.fingerprint,
        "explainer": explainer,
        "explainer_options": options,
        "modality": modality,
        "model": model_name,
        "data": data_spec,
        "max_new_tokens": max_new_tokens,
        "only_correct": only_correct,
    }
    with ShardWriter(out_dir, manifest, shard_size) as writer:
        done = writer.done_ids()
        todo = [s for s in samples if s.id not in done and f"{s.id}#0" not in done]
        with tqdm(total=len(samples), initial=len(samples) - len(todo), unit="sample", desc="collect") as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                collect_batch(adapter, processor, batch, writer, explain, max_new_tokens, only_correct)
                bar.update(len(batch))
                if on_batch is not None:
                    on_batch([s.id for s in batch])
    manifest = json.loads((Path(out_dir) / MANIFEST_NAME).read_text())
    print(f"collect: {manifest['records']} records in {out_dir}; dropped: {manifest['dropped'] or 'none'}")
    return manifest


def chosen_explainer(
    explainer: str, variant: str | None = None, quantity=None, gradient=None, heads=None, answer_tokens=None
):
    """(explain(adapter, encoded, answers), its options for the manifest); the GAE variant from the
    preset `variant` (default: default) and the options given (None: the preset's)."""
    explain = EXPLAINERS.get(explainer)
    given = {"quantity": quantity, "gradient": gradient, "heads": heads, "answer_tokens": answer_tokens}
    given = {name: value for name, value in given.items() if value is not None}
    if explainer == "gae":
        chosen = gae_variant(variant or "default", **given)
        return functools.partial(explain, variant=chosen), chosen.as_dict()
    if variant is not None or given:
        named = sorted(given) + (["variant"] if variant is not None else [])
        raise ExplainPruneError(f"GAE options ({', '.join(named)}) do not apply to the {explainer} explainer")
    return explain, {}


def collect_batch(
    adapter: Adapter,
    processor,
    samples: list[Sample],
    writer: ShardWriter,
    explain: Callable,
    max_new_tokens: int,
    only_correct: bool,
) -> None:
    """Answer, filter, explain (`explain(adapter, encoded, answers)`) and write the records of one
    batch of samples."""
    with torch.no_grad():
        encoded = adapter.encode(dict(make_inputs(processor, samples, device=adapter.model.device)))
    answers = generate_answers(adapter.model, encoded, max_new_tokens, keep_stop=True)
    texts = processor.tokenizer.batch_decode(
        select_answer_tokens(answers, "no-eos", stop_token_ids(adapter.model)), skip_special_tokens=True
    )
    kept = []
    for index, (sample, text) in enumerate(zip(samples, texts)):
        if only_correct and sample.answer and not is_correct(text, sample.answer):
            writer.drop(sample.id, "incorrect")
        else:
            kept.append(index)
    if not kept:
        return
    encoded = select_samples(encoded, kept)
    relevance = explain(adapter, encoded, [answers[i] for i in kept])
    with torch.no_grad():
        features = span_features(adapter, encoded)
    for row, index in enumerate(kept):
        for span_index, span in enumerate(encoded.spans[row]):
            record_id = f"{samples[index].id}#{span_index}"
            values = relevance[row][span_index]
            if not values.max() > 0:
                writer.drop(record_id, "zero_relevance")
                continue
            writer.add(Record(record_id, features[row][span_index].cpu(), preprocess_target(values), tuple(span.grids)))


def select_samples(encoded: EncodedBatch, indices: list[int]) -> EncodedBatch:
    """The sub-batch of the samples at `indices`."""
    rows = torch.tensor(indices, device=encoded.inputs_embeds.device)
    return EncodedBatch(
        input_ids=encoded.input_ids[rows],
        inputs_embeds=encoded.inputs_embeds[rows],
        attention_mask=encoded.attention_mask[rows],
        position_ids=encoded.position_ids[..., rows, :],
        spans=[encoded.spans[i] for i in indices],
    )


def main(args: argparse.Namespace) -> None:
    """Run `explainprune collect` with parsed arguments."""
    collect(
        args.model,
        None,
        args.data,
        args.out,
        limit=args.limit,
        explainer=args.explainer,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        only_correct=not args.keep_incorrect,
        shard_size=args.shard_size,
        variant=args.variant,
        quantity=args.quantity,
        gradient=args.gradient,
        heads=args.heads,
        answer_tokens=args.answer_tokens,
        device=args.device,
        dtype=args.dtype,
        attn_implementation=args.attn_implementation,
    )
