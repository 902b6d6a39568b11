"""One benchmark run: every (scorer, keep ratio) case of one model and input, measured in rounds.

Each round measures every case once, so load changes during the run hit all cases alike; the
first `warmup` rounds are discarded. Per case and round: scoring (`compressor.select`), for
input-stage scorers the gather of kept tokens and the LLM prefill (`model(**prepared,
use_cache=True, logits_to_keep=1)`), for in-LLM pruners (FastV, DART) their whole prefill (layers < K, scoring, layers >= K,
lm_head), then greedy decoding of `decode_tokens` tokens through the KV cache. Saliency-based
scorers get the vision encoder's captured block input; recomputing its attention is part of their
scoring time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from transformers import DynamicCache

from ..compressor import Compressor
from ..compressor import prune_stats
from ..prune import gather_batch, with_replacements
from ..selection import kept_positions, span_budgets
from ..inllm.base import next_positions, step_position_ids
from .flops import prefill_flops
from .timing import Samples, timed

FIGURES = ("scoring_s", "gather_s", "prefill_s", "decode_s")


@dataclass
class Case:
    """One (scorer, keep ratio) configuration and its measurements."""

    scorer: str
    keep_ratio: float
    compressor: Compressor
    samples: dict[str, Samples] = field(default_factory=lambda: {name: Samples() for name in FIGURES})
    facts: dict = field(default_factory=dict)  # sizes, identical in every round
    layer_input: torch.Tensor | None = None  # in-LLM pruners: layer K's input, for timing their scoring alone


def kv_cache_bytes(cache) -> int:
    """Bytes held by the keys and values of every layer of a transformers cache."""
    return sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))


def decode_with_model(model, output, prepared: dict, steps: int) -> None:
    """`steps` greedy tokens through `model`'s forward and the prefill's KV cache."""
    cache, mask = output.past_key_values, prepared["attention_mask"]
    mrope = prepared["position_ids"].ndim == 3
    next_position = next_positions(prepared["position_ids"], mask)
    token = output.logits[:, -1].argmax(-1)
    for _ in range(steps):
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        output = model(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=step_position_ids(next_position, mrope),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        token = output.logits[:, -1].argmax(-1)
        next_position = next_position + 1


def decode_in_llm(pruner, adapter, state, steps: int) -> None:
    """`steps` greedy tokens through an in-LLM pruner's two-part KV cache."""
    for _ in range(steps):
        pruner.decode_step(adapter, state, state.logits.argmax(-1))


def measure_input_stage(case: Case, encoded, decode_tokens: int) -> dict:
    compressor = case.compressor
    device = compressor.model.device
    scoring_s, choices = timed(device, compressor.choose, encoded)
    kept = kept_positions(encoded, choices)
    gather_s, prepared = timed(device, gather_batch, with_replacements(encoded, choices), kept)
    prefill_s, output = timed(device, compressor.model, **prepared, use_cache=True, logits_to_keep=1)
    length = prepared["inputs_embeds"].shape[1]
    case.facts.update(
        sequence_length=length,
        layer_lengths=[length] * compressor.adapter.language_model.config.num_hidden_layers,
        visual_tokens_kept=prune_stats(encoded, kept).visual_after[0],
        kv_bytes=kv_cache_bytes(output.past_key_values),
    )
    decode_s, _ = timed(device, decode_with_model, compressor.model, output, prepared, decode_tokens)
    return dict(scoring_s=scoring_s, gather_s=gather_s, prefill_s=prefill_s, decode_s=decode_s)


def measure_in_llm(case: Case, encoded, decode_tokens: int) -> dict:
    compressor, pruner = case.compressor, case.compressor.scorer
    device = compressor.model.device
    if case.layer_input is None:
        case.layer_input = pruner.early_layers(compressor.adapter, encoded, DynamicCache(config=compressor.adapter.language_model.config))
    at_layer = replace(encoded, inputs_embeds=case.layer_input)
    scoring_s, _ = timed(device, pruner.choose, compressor.adapter, at_layer, span_budgets(at_layer, compressor.keep_ratio))
    prefill_s, state = timed(device, pruner.prefill, compressor.adapter, encoded, compressor.keep_ratio)
    depth = compressor.adapter.language_model.config.num_hidden_layers
    full, pruned = encoded.inputs_embeds.shape[1], state.late_mask.shape[1]
    case.facts.update(
        sequence_length=pruned,
        layer_lengths=[full] * pruner.layer + [pruned] * (depth - pruner.layer),
        visual_tokens_kept=prune_stats(encoded, state.kept).visual_after[0],
        kv_bytes=kv_cache_bytes(state.cache),
    )
    decode_s, _ = timed(device, decode_in_llm, pruner, compressor.adapter, state, decode_tokens)
    return dict(scoring_s=scoring_s, gather_s=0.0, prefill_s=prefill_s, decode_s=decode_s)


def ratio(value, baseline):
    return value / baseline if baseline else None


def case_figures(case: Case, vision: Samples, decode_tokens: int, text_config) -> dict:
    """The reported figures of one case (medians for times)."""
    median = {name: samples.median for name, samples in case.samples.items()}
    # An in-LLM pruner's prefill includes its scoring; input-stage scorers select and gather before it.
    before_prefill = median["scoring_s"] + median["gather_s"] if case.compressor.input_stage else 0.0
    return {
        "vision_s": vision.median,
        "scoring_s": median["scoring_s"],
        "prefill_s": median["prefill_s"],
        "ttft_s": vision.median + before_prefill + median["prefill_s"],
        "decode_tok_s": decode_tokens / median["decode_s"],
        "kv_bytes": case.facts["kv_bytes"],
        "flops": prefill_flops(text_config, case.facts["layer_lengths"]),
    }


def case_row(case: Case, figures: dict, baseline: dict, vision: Samples) -> dict:
    """The report row of one case; ratios against `baseline` (the same scorer at keep 1.0)."""
    return {
        "scorer": case.scorer,
        "keep_ratio": case.keep_ratio,
        **figures,
        "prefill_ratio": ratio(figures["prefill_s"], baseline["prefill_s"]),
        "sequence_length": case.facts["sequence_length"],
        "visual_tokens_kept": case.facts["visual_tokens_kept"],
        "scoring_share": ratio(figures["scoring_s"], baseline["prefill_s"]),
        "ratios": {name: ratio(value, baseline[name]) for name, value in figures.items()},
        "spread": {"vision_s": vision.spread, **{name: s.spread for name, s in case.samples.items()}},
    }


@torch.no_grad()
def run_benchmark(
    model,
    inputs: dict,
    scorers=("layer0", "fastv"),
    keep_ratios=(1.0, 0.5, 0.25, 0.1),
    repeats: int = 3,
    warmup: int = 1,
    decode_tokens: int = 32,
    scorer_options: dict | None = None,
    progress=print,
) -> dict:
    """Measure every (scorer, keep ratio) case (keep 1.0 always included; `scorer_options` maps a
    scorer name to its options); returns {"visual_tokens", "sequence_length", "rows"}."""
    keep_ratios = sorted({1.0, *keep_ratios}, reverse=True)
    scorer_options = scorer_options or {}
    cases = [
        Case(name, keep, Compressor(model, scorer=name, keep_ratio=keep, **scorer_options.get(name, {})))
        for name in scorers
        for keep in keep_ratios
    ]
    encoder = cases[0].compressor
    capture_vision = any(getattr(case.compressor.scorer, "needs_vision_capture", False) for case in cases)
    vision = Samples()
    encoded = None
    for round_index in range(warmup + repeats):
        seconds, encoded = timed(model.device, encoder.encode, capture_vision=capture_vision, **inputs)
        if round_index >= warmup:
            vision.values.append(seconds)
    progress(f"vision encoder: {vision.median:.3f} s (median of {repeats})")
    for round_index in range(warmup + repeats):
        measuring = round_index >= warmup
        for case in cases:
            measure = measure_input_stage if case.compressor.input_stage else measure_in_llm
            figures = measure(case, encoded, decode_tokens if measuring else min(2, decode_tokens))
            if measuring:
                for name, value in figures.items():
                    case.samples[name].values.append(value)
        progress(f"round {round_index + 1}/{warmup + repeats} done{'' if measuring else ' (warm-up)'}")
    text_config = encoder.adapter.language_model.config
    figures = [case_figures(case, vision, decode_tokens, text_config) for case in cases]
    baselines = {case.scorer: figures[i] for i, case in enumerate(cases) if case.keep_ratio == 1.0}
    rows = [case_row(case, figures[i], baselines[case.scorer], vision) for i, case in enumerate(cases)]
    visual = sum(span.num_tokens + span.structural.numel() for span in encoded.spans[0])
    return {"visual_tokens": visual, "sequence_length": encoded.inputs_embeds.shape[1], "rows": rows}
