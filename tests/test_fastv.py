"""FastV: exact at keep 1.0, budgeted visual tokens in layers >= K, a correct two-length KV cache."""

from __future__ import annotations

import pytest
import torch
from conftest import greedy, image, image_inputs, load_tiny

from explainprune import Compressor, ExplainPruneError
from explainprune.compressor import prune_stats
from explainprune.prune import token_budget

LAYER = 1  # the tiny models have 2 decoder layers


def padded_pair(processor):
    """Two samples of different lengths (left padding)."""
    return image_inputs(processor, [image(150, 100), image(100, 150, 1)], ["what colour is the circle?", "yes"])


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("layer", [0, LAYER])
def test_keep_all_equals_model_generate(tiny_dirs, family, layer, attention):
    """Under every attention implementation: FastV's masks come from transformers' own mask builder
    (the hand-made boolean sdpa mask was added to the eager scores and changed the answers)."""
    model, processor = load_tiny(tiny_dirs, family, attn_implementation=attention)
    inputs = padded_pair(processor)
    assert bool((inputs["attention_mask"] == 0).any())
    fastv = Compressor(model, processor, scorer="fastv", keep_ratio=1.0, layer=layer)
    assert torch.equal(greedy(model, inputs, n=8), greedy(fastv, inputs, n=8))


def test_layers_from_k_see_the_budgeted_visual_tokens(tiny):
    model, processor = tiny
    inputs = image_inputs(processor, [image(150, 100)])
    compressor = Compressor(model, processor, scorer="fastv", keep_ratio=0.5, layer=LAYER)
    (span,) = compressor.encode(**inputs).spans[0]
    lengths: dict[int, list[int]] = {}  # layer -> sequence length of each call (prefill first)

    def record(index):
        return lambda module, args: lengths.setdefault(index, []).append(args[0].shape[1])

    layers = compressor.adapter.language_model.layers
    hooks = [layer.register_forward_pre_hook(record(i)) for i, layer in enumerate(layers)]
    try:
        new_tokens = compressor.generate(**inputs, max_new_tokens=3)[:, inputs["input_ids"].shape[1] :]
    finally:
        for hook in hooks:
            hook.remove()
    full = inputs["input_ids"].shape[1]
    assert lengths[0] == [full, 1, 1]
    assert lengths[LAYER][1:] == [1, 1]
    assert lengths[LAYER][0] == full - span.num_tokens + token_budget(0.5, span.num_tokens)
    visual = span.num_tokens + span.structural.numel()
    _, kept = compressor.scorer.generate(compressor.adapter, compressor.encode(**inputs), 0.5, max_new_tokens=1)
    assert prune_stats(compressor.encode(**inputs), kept).visual_after == [visual - span.num_tokens + token_budget(0.5, span.num_tokens)]
    assert new_tokens.shape == (1, 3)


def test_pruned_generation_is_the_same_under_sdpa_and_eager(tiny_dirs, family):
    inputs = padded_pair(load_tiny(tiny_dirs, family)[1])
    answers = []
    for attention in ("sdpa", "eager"):
        model, processor = load_tiny(tiny_dirs, family, attn_implementation=attention)
        answers.append(greedy(Compressor(model, processor, scorer="fastv", keep_ratio=0.5, layer=LAYER), inputs, n=8))
    assert torch.equal(*answers)


@pytest.mark.parametrize("family", ["qwen2-vl", "llava-onevision"])
def test_cached_decoding_equals_recomputing_the_pruned_sequence(tiny_dirs, family):
    """A decode step through the two-length cache equals running the layers without cache on
    (full sequence + new token) below K and (kept positions + new token) from K."""
    model, processor = load_tiny(tiny_dirs, family)
    inputs = padded_pair(processor)
    compressor = Compressor(model, processor, scorer="fastv", keep_ratio=0.5, layer=LAYER)
    fastv, language_model = compressor.scorer, compressor.adapter.language_model
    encoded = compressor.encode(**inputs)
    state = fastv.prefill(compressor.adapter, encoded, 0.5)
    assert state.cache.get_seq_length(0) == encoded.inputs_embeds.shape[1]
    assert state.cache.get_seq_length(LAYER) == max(k.numel() for k in state.kept) < encoded.inputs_embeds.shape[1]
    token = state.logits.argmax(-1)
    fastv.decode_step(compressor.adapter, state, token)

    embeds = torch.cat([encoded.inputs_embeds, model.get_input_embeddings()(token[:, None])], dim=1)
    column = (state.next_position - 1)[:, None]
    if encoded.position_ids.ndim == 3:
        column = column[None].expand(3, -1, -1)
    position_ids = torch.cat([encoded.position_ids, column], dim=-1)
    mask = torch.cat([encoded.attention_mask, torch.ones_like(token[:, None])], dim=1)
    with torch.no_grad():
        hidden = fastv.run_layers(language_model, range(LAYER), embeds, position_ids, mask, None)
        expected = []
        for b, kept in enumerate(state.kept):
            rows = torch.cat([kept, torch.tensor([embeds.shape[1] - 1])])
            out = fastv.run_layers(
                language_model, range(LAYER, 2), hidden[b : b + 1, rows], position_ids[..., b : b + 1, rows], mask[b : b + 1, rows], None
            )
            expected.append(fastv.next_token_logits(compressor.adapter, out[:, -1]))
    assert torch.allclose(state.logits, torch.cat(expected), atol=1e-4)


def test_stops_at_eos_and_pads_finished_samples(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    inputs = padded_pair(processor)
    compressor = Compressor(model, processor, scorer="fastv", keep_ratio=0.5, layer=LAYER)
    prompt_length = inputs["input_ids"].shape[1]
    free = compressor.generate(**inputs, max_new_tokens=5, eos_token_id=[])[:, prompt_length:]
    assert free.shape == (2, 5)
    first = int(free[0, 0])
    stopped = compressor.generate(**inputs, max_new_tokens=5, eos_token_id=first, pad_token_id=0)[:, prompt_length:]
    if bool((free[1] == first).any()):  # both samples stop: decoding ends with the later one
        assert stopped.shape[1] == int((free[1] == first).nonzero()[0]) + 1
    else:
        assert stopped.shape[1] == 5
    assert stopped[0, 0] == first and bool((stopped[0, 1:] == 0).all())


def test_prepare_and_unsupported_options_are_refused(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "llava")
    inputs = image_inputs(processor, [image(150, 100)])
    compressor = Compressor(model, processor, scorer="fastv", keep_ratio=0.5, layer=LAYER)
    with pytest.raises(ExplainPruneError, match="use Compressor.generate"):
        compressor.prepare(**inputs)
    with pytest.raises(ExplainPruneError, match="sampling"):
        compressor.generate(**inputs, max_new_tokens=2, do_sample=True)
    with pytest.raises(ExplainPruneError, match="beam search"):
        compressor.generate(**inputs, max_new_tokens=2, num_beams=2)
    with pytest.raises(ExplainPruneError, match="temperature"):
        compressor.generate(**inputs, max_new_tokens=2, temperature=0.7)
    with pytest.raises(ExplainPruneError, match="has 2 layers"):
        Compressor(model, processor, scorer="fastv", layer=2).generate(**inputs, max_new_tokens=2)
    with pytest.raises(ExplainPruneError, match="layer index"):
        Compressor(model, processor, scorer="fastv", layer=-1)
