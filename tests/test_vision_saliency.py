"""Vision saliency recomputed from the captured block input equals the model's own attention
probabilities; Qwen2.5-VL's window order is undone exactly as the model orders its merger output."""

from __future__ import annotations

import inspect

import pytest
import torch
from conftest import image, image_inputs
from transformers import AttentionInterface, AutoModelForImageTextToText, AutoProcessor

from explainprune.adapters import get_adapter
from explainprune.vision_saliency import batched_attention, capture_module_inputs, span_saliency

RECORDED: list = []


def recording_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The family's own eager attention, whose probabilities are recorded per call."""
    output, weights = inspect.getmodule(type(module)).eager_attention_forward(
        module, query, key, value, attention_mask, scaling=scaling, dropout=dropout
    )
    RECORDED.append((module, weights.detach()))
    return output, weights


AttentionInterface.register("recording_eager", recording_attention)


def load(tiny_dirs, family, attn_implementation):
    model = AutoModelForImageTextToText.from_pretrained(tiny_dirs[family], attn_implementation=attn_implementation)
    processor = AutoProcessor.from_pretrained(tiny_dirs[family])
    processor.tokenizer.padding_side = "left"
    return model.eval(), processor


@pytest.mark.parametrize("family", ["qwen2-vl", "qwen2.5-vl"])
def test_qwen_saliency_is_the_recorded_attention_received_per_merge_group(tiny_dirs, family):
    model, processor = load(tiny_dirs, family, "recording_eager")
    adapter = get_adapter(model)
    inputs = image_inputs(processor, [image(224, 168), image(112, 224, seed=1)], ["a?", "b?"])
    RECORDED.clear()
    with torch.no_grad():
        encoded = adapter.encode(inputs, capture_vision=True)
    block = adapter.saliency_attention()
    # Per segment (one per image) the recorded (1, heads, n, n) probabilities, in the block's order.
    received = torch.cat([weights[0].float().mean(dim=(0, 1)) for module, weights in RECORDED if module is block])
    unit = model.config.vision_config.spatial_merge_size**2
    expected = received.view(-1, unit).sum(-1)[adapter.raster_order(inputs["image_grid_thw"])]
    got = torch.cat([item.saliency for sample in span_saliency(adapter, encoded) for item in sample])
    assert torch.allclose(got, expected, atol=1e-5)


def test_qwen25_raster_order_is_the_models_merger_order(tiny_dirs):
    model, processor = load(tiny_dirs, "qwen2.5-vl", "sdpa")
    adapter = get_adapter(model)
    inputs = image_inputs(processor, [image(224, 168), image(168, 112, seed=1)], ["a?", "b?"])
    visual = model.model.visual
    outputs = []
    handle = visual.blocks[-1].register_forward_hook(lambda module, args, output: outputs.append(output))
    try:
        with torch.no_grad():
            features = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], return_dict=True)
            merged = visual.merger(outputs[0])
    finally:
        handle.remove()
    order = adapter.raster_order(inputs["image_grid_thw"])
    assert not torch.equal(order, torch.arange(order.numel()))  # windows really reorder these grids
    assert torch.allclose(merged[order], torch.cat(list(features.pooler_output)), atol=1e-6)


@pytest.mark.parametrize("family", ["llava", "llava-onevision"])
def test_clip_and_siglip_saliency_is_the_eager_attention(tiny_dirs, family):
    model, processor = load(tiny_dirs, family, "eager")
    adapter = get_adapter(model)
    pixel_values = image_inputs(processor, [image(56, 56), image(56, 56, seed=1)], ["a?", "b?"])["pixel_values"]
    if pixel_values.ndim == 5:
        pixel_values = pixel_values[:, 0]  # the base crop of each image
    tower, attention = model.model.vision_tower, adapter.saliency_attention()
    layers = getattr(tower, "vision_model", tower).encoder.layers
    index = next(i for i, layer in enumerate(layers) if layer.self_attn is attention)
    calls: list = []
    with torch.no_grad(), capture_module_inputs(attention, calls):
        eager = tower(pixel_values, output_attentions=True).attentions[index].float()
    cls_query = model.config.vision_feature_select_strategy == "default"
    args, kwargs = calls[0]
    received, keys = batched_attention(attention, args[0] if args else kwargs["hidden_states"], cls_query)
    expected = eager[:, :, 0, 1:].mean(1) if cls_query else eager.mean(dim=(1, 2))
    assert torch.allclose(received, expected, atol=1e-5)
    assert keys.shape == (*expected.shape, attention.head_dim)


def test_span_saliency_without_capture_is_a_clear_error(tiny_dirs):
    from explainprune import ExplainPruneError

    model, processor = load(tiny_dirs, "qwen2-vl", "sdpa")
    adapter = get_adapter(model)
    with torch.no_grad():
        encoded = adapter.encode(image_inputs(processor, [image(56, 56)]))
    with pytest.raises(ExplainPruneError, match="capture_vision=True"):
        span_saliency(adapter, encoded)
