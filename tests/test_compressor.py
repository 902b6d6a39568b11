"""Compressor on every family: exactness at keep 1.0, budgets and positions when pruning, batches."""

from __future__ import annotations

import pytest
import torch
from conftest import VIDEO_FAMILIES, greedy, image, image_inputs, load_tiny, video_inputs, video

from explainprune import Compressor
from explainprune.prune import token_budget


def logits(model, **inputs):
    with torch.no_grad():
        return model(**inputs).logits


def real_rows(tensor, attention_mask, sample):
    """The rows of `tensor[sample]` that are real tokens (padding removed)."""
    return tensor[sample][attention_mask[sample].bool()]


def test_keep_all_equals_unpruned_model_on_images(tiny):
    model, processor = tiny
    inputs = image_inputs(processor, [image(150, 100)])
    prepared = Compressor(model, processor, keep_ratio=1.0).prepare(**inputs)
    assert (logits(model, **inputs) - logits(model, **prepared)).abs().max().item() <= 1e-6
    assert torch.equal(greedy(model, inputs), greedy(Compressor(model, processor, keep_ratio=1.0), inputs))


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_keep_all_equals_unpruned_model_on_video(tiny_dirs, family):
    model, processor = load_tiny(tiny_dirs, family)
    inputs = video_inputs(processor, [video()])
    compressor = Compressor(model, processor, keep_ratio=1.0)
    assert compressor.encode(**inputs).spans[0][0].modality == "video"
    prepared = compressor.prepare(**inputs)
    assert (logits(model, **inputs) - logits(model, **prepared)).abs().max().item() <= 1e-6
    assert torch.equal(greedy(model, inputs), greedy(compressor, inputs))


@pytest.mark.parametrize("keep_ratio", [0.5, 0.25])
def test_pruning_keeps_budget_and_original_positions(tiny, keep_ratio):
    model, processor = tiny
    inputs = image_inputs(processor, [image(150, 100)])
    compressor = Compressor(model, processor, keep_ratio=keep_ratio)
    encoded = compressor.encode(**inputs)
    (span,) = encoded.spans[0]
    kept = compressor.select(encoded)[0]
    visual_kept = kept[torch.isin(kept, span.positions)]
    assert visual_kept.numel() == token_budget(keep_ratio, span.num_tokens)
    assert torch.isin(span.structural, kept).all()  # LLaVA-OneVision newlines stay
    prepared = compressor.prepare(**inputs)
    length = prepared["inputs_embeds"].shape[1]
    assert length == encoded.inputs_embeds.shape[1] - (span.num_tokens - visual_kept.numel())
    assert torch.equal(prepared["inputs_embeds"][0], encoded.inputs_embeds[0, kept])
    assert torch.equal(prepared["position_ids"][..., 0, :], encoded.position_ids[..., 0, kept])


def test_positions_are_the_models_own(tiny_dirs):
    """Qwen's M-RoPE positions from the model's get_rope_index survive pruning unchanged."""
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    inputs = image_inputs(processor, [image(150, 100)])
    reference, _ = model.model.get_rope_index(
        inputs["input_ids"], inputs["mm_token_type_ids"], inputs["image_grid_thw"], attention_mask=inputs["attention_mask"]
    )
    compressor = Compressor(model, processor, keep_ratio=0.5)
    kept = compressor.select(compressor.encode(**inputs))[0]
    prepared = compressor.prepare(**inputs)
    assert torch.equal(prepared["position_ids"][:, 0], reference[:, 0, kept])
    assert prepared["position_ids"].shape[0] == 3


def test_pruned_generation_runs_and_stops(tiny):
    model, processor = tiny
    inputs = image_inputs(processor, [image(150, 100)])
    compressor = Compressor(model, processor, keep_ratio=0.25)
    out = greedy(compressor, inputs, n=5)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 5)
    assert torch.equal(out[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])
    # Stopping: make the first generated token the end-of-sequence token; generation stops there.
    first = out[0, inputs["input_ids"].shape[1]].item()
    stopped = compressor.generate(**inputs, max_new_tokens=5, do_sample=False, eos_token_id=first)
    assert stopped.shape[1] == inputs["input_ids"].shape[1] + 1


def test_decoding_continues_from_original_positions(tiny_dirs):
    """Greedy decoding on the pruned prompt equals a step-by-step forward with explicit positions."""
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    inputs = image_inputs(processor, [image(150, 100)])
    compressor = Compressor(model, processor, keep_ratio=0.5)
    prepared = compressor.prepare(**inputs)
    generated = compressor.generate(**inputs, max_new_tokens=3, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    embeds, positions = prepared["inputs_embeds"], prepared["position_ids"]
    for step in range(3):
        with torch.no_grad():
            next_token = model(inputs_embeds=embeds, position_ids=positions).logits[0, -1].argmax()
        assert next_token.item() == generated[step].item()
        token_embed = model.get_input_embeddings()(next_token.view(1, 1))
        embeds = torch.cat([embeds, token_embed], dim=1)
        positions = torch.cat([positions, positions[..., -1:] + 1], dim=-1)


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_batch_with_different_image_sizes_matches_single_samples(tiny, padding_side):
    model, processor = tiny
    images = [image(150, 100, seed=1), image(90, 120, seed=2)]
    questions = ["what colour is the circle?", "is there a square?"]
    processor.tokenizer.padding_side = padding_side
    try:
        batch = image_inputs(processor, images, questions)
        singles = [image_inputs(processor, [img], [q]) for img, q in zip(images, questions)]
    finally:
        processor.tokenizer.padding_side = "left"
    compressor = Compressor(model, processor, keep_ratio=0.5)
    prepared = compressor.prepare(**batch)
    batch_logits = logits(model, **prepared)
    for b, single in enumerate(singles):
        alone = compressor.prepare(**single)
        assert int(prepared["attention_mask"][b].sum()) == alone["inputs_embeds"].shape[1]
        for key in ("inputs_embeds", "position_ids"):
            got = prepared[key][..., b, :] if key == "position_ids" and prepared[key].ndim == 3 else prepared[key][b]
            mask = prepared["attention_mask"][b].bool()
            got = got[..., mask] if key == "position_ids" else got[mask]
            want = alone[key][..., 0, :] if key == "position_ids" and alone[key].ndim == 3 else alone[key][0]
            assert torch.allclose(got.float(), want.float(), atol=1e-5)
        alone_logits = logits(model, **alone)[0]
        assert torch.allclose(real_rows(batch_logits, prepared["attention_mask"], b), alone_logits, atol=1e-4)
    if padding_side == "left":
        out = greedy(compressor, batch, n=4)[:, batch["input_ids"].shape[1] :]
        for b, single in enumerate(singles):
            assert torch.equal(out[b], greedy(compressor, single, n=4)[0, single["input_ids"].shape[1] :])


def test_several_images_in_one_prompt_each_get_a_budget(tiny):
    model, processor = tiny
    inputs = image_inputs(processor, [image(150, 100, 1), image(100, 100, 2)], per_prompt=2)
    compressor = Compressor(model, processor, keep_ratio=0.5)
    encoded = compressor.encode(**inputs)
    assert len(encoded.spans[0]) == 2
    kept = compressor.select(encoded)[0]
    for span in encoded.spans[0]:
        assert int(torch.isin(kept, span.positions).sum()) == token_budget(0.5, span.num_tokens)
    assert greedy(compressor, inputs, n=3).shape[1] == inputs["input_ids"].shape[1] + 3


@pytest.mark.parametrize("family", VIDEO_FAMILIES)
def test_video_pruning_keeps_budget(tiny_dirs, family):
    model, processor = load_tiny(tiny_dirs, family)
    inputs = video_inputs(processor, [video()])
    compressor = Compressor(model, processor, keep_ratio=0.5)
    encoded = compressor.encode(**inputs)
    (span,) = encoded.spans[0]
    assert span.grids[0][0] > 1 or family != "llava-onevision"  # frames form the t axis
    kept = compressor.select(encoded)[0]
    assert int(torch.isin(kept, span.positions).sum()) == token_budget(0.5, span.num_tokens)
    assert greedy(compressor, inputs, n=3).shape[1] == inputs["input_ids"].shape[1] + 3


def test_text_only_prompt_passes_through_unchanged(tiny):
    model, processor = tiny
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": "how many shapes?"}]}], add_generation_prompt=True, tokenize=False
    )
    inputs = processor(text=[text], return_tensors="pt")
    compressor = Compressor(model, processor, keep_ratio=0.25)
    prepared = compressor.prepare(**inputs)
    assert prepared["inputs_embeds"].shape[1] == inputs["input_ids"].shape[1]
    assert (logits(model, **inputs) - logits(model, **prepared)).abs().max().item() <= 1e-6
    assert prepared.stats.visual_before == [0]
