"""Tiny random-weight models of every supported family, built from local configs (no downloads).

Used by the tests, the benchmark smoke test and quick trials. `save_tiny(family, dir)` writes a
save_pretrained directory that AutoModelForImageTextToText / AutoProcessor load like a real checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessor,
    LlavaOnevisionProcessor,
    LlavaOnevisionVideoProcessor,
    LlavaProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
    SiglipVisionConfig,
)

from .tokenizer import (
    LLAVA_CHAT_TEMPLATE,
    LLAVA_SPECIAL_TOKENS,
    QWEN_CHAT_TEMPLATE,
    QWEN_SPECIAL_TOKENS,
    train_bpe_tokenizer,
)

FAMILIES = ("qwen2-vl", "qwen2.5-vl", "llava-onevision", "llava")
_TEXT = [
    "what colour is the circle? red blue green yellow purple orange",
    "is there a square left of the triangle? yes no how many shapes are there one two three",
    "describe the image. the video shows a moving ball.",
]
_TEXT_SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def _tokenizer(special_tokens):
    return train_bpe_tokenizer(_TEXT * 4, special_tokens, vocab_size=300)


def _token_ids(tokenizer) -> dict:
    return dict(
        bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )


def _qwen(family: str):
    tokenizer = _tokenizer(QWEN_SPECIAL_TOKENS)
    ids = tokenizer.convert_tokens_to_ids
    text = dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        **_TEXT_SIZES,
        **_token_ids(tokenizer),
    )
    special = dict(
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"), vision_start_token_id=ids("<|vision_start|>")
    )
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=224 * 224)
    video_processor = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    if family == "qwen2-vl":
        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
        config = Qwen2VLConfig(text_config=text, vision_config=vision, **special, **_token_ids(tokenizer))
        model = Qwen2VLForConditionalGeneration(config)
        processor = Qwen2VLProcessor(image_processor, tokenizer, video_processor, chat_template=QWEN_CHAT_TEMPLATE)
    else:
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, fullatt_block_indexes=[1], window_size=56)
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **special, **_token_ids(tokenizer))
        model = Qwen2_5_VLForConditionalGeneration(config)
        processor = Qwen2_5_VLProcessor(image_processor, tokenizer, video_processor, chat_template=QWEN_CHAT_TEMPLATE)
    return model, processor


def _llava_text(tokenizer) -> dict:
    return dict(model_type="qwen2", vocab_size=len(tokenizer), max_position_embeddings=4096, **_TEXT_SIZES, **_token_ids(tokenizer))


def _llava():
    tokenizer = _tokenizer(LLAVA_SPECIAL_TOKENS)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14, projection_dim=32)
    config = LlavaConfig(
        vision_config=vision,
        text_config=_llava_text(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        **_token_ids(tokenizer),
    )
    image_processor = CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    processor = LlavaProcessor(
        image_processor, tokenizer, patch_size=14, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=LLAVA_CHAT_TEMPLATE,
    )  # fmt: skip
    return LlavaForConditionalGeneration(config), processor


def _llava_onevision():
    tokenizer = _tokenizer(LLAVA_SPECIAL_TOKENS)
    ids = tokenizer.convert_tokens_to_ids
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56, patch_size=14)
    pinpoints = [[56, 56], [56, 112], [112, 56], [112, 112]]
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=_llava_text(tokenizer),
        image_token_id=ids("<image>"),
        video_token_id=ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        **_token_ids(tokenizer),
    )
    image_processor = LlavaOnevisionImageProcessor(size={"height": 56, "width": 56}, image_grid_pinpoints=pinpoints)
    video_processor = LlavaOnevisionVideoProcessor(size={"height": 56, "width": 56})
    processor = LlavaOnevisionProcessor(
        image_processor, tokenizer, video_processor, num_image_tokens=16,
        vision_feature_select_strategy="full", chat_template=LLAVA_CHAT_TEMPLATE,
    )  # fmt: skip
    return LlavaOnevisionForConditionalGeneration(config), processor


def build_tiny(family: str, seed: int = 0):
    """(model, processor) of a tiny random-weight model of `family` (see FAMILIES)."""
    torch.manual_seed(seed)
    if family in ("qwen2-vl", "qwen2.5-vl"):
        model, processor = _qwen(family)
    elif family == "llava":
        model, processor = _llava()
    elif family == "llava-onevision":
        model, processor = _llava_onevision()
    else:
        raise ValueError(f"unknown tiny family {family!r}; known: {', '.join(FAMILIES)}")
    processor.tokenizer.padding_side = "left"
    return model.eval(), processor


def save_tiny(family: str, directory: str | Path, seed: int = 0) -> Path:
    """Build a tiny model of `family` and save it with its processor to `directory`."""
    model, processor = build_tiny(family, seed)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return Path(directory)
