"""Processor-equivalent inputs with about N visual tokens, built from token ids alone (no tokenizer).

Text tokens are random ordinary ids; one image whose size gives the visual token count closest to N.
"""

from __future__ import annotations

import math

import torch
from transformers.models.llava_onevision.modeling_llava_onevision import image_size_to_num_patches

from ..errors import ExplainPruneError

QWEN_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


def special_token_ids(config) -> set[int]:
    """Every id the config names (image, video, vision start/end, bos, eos, pad)."""
    ids = set()
    for sub_config in (config, config.get_text_config()):
        for key, value in sub_config.to_dict().items():
            if key.endswith(("token_id", "token_index")) and isinstance(value, int):
                ids.add(value)
    return ids


def text_ids(config, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` random ordinary token ids (no special token)."""
    vocab = config.get_text_config().vocab_size
    ids = torch.randint(0, vocab, (count,), generator=generator)
    special = torch.tensor(sorted(special_token_ids(config)))
    while bool(torch.isin(ids, special).any()):
        clash = torch.isin(ids, special)
        ids[clash] = torch.randint(0, vocab, (int(clash.sum()),), generator=generator)
    return ids


def _sandwich(config, before: int, visual: list[int], after: int, generator) -> torch.Tensor:
    return torch.cat([text_ids(config, before, generator), torch.tensor(visual), text_ids(config, after, generator)])[None]


def qwen_inputs(model, visual_tokens: int, text_tokens: int, generator) -> dict:
    """Qwen2-VL / Qwen2.5-VL: one image of about `visual_tokens` merged patches."""
    config, vision = model.config, model.config.vision_config
    rows = max(1, round(math.sqrt(visual_tokens)))
    cols = max(1, round(visual_tokens / rows))
    merge, patch, temporal = vision.spatial_merge_size, vision.patch_size, vision.temporal_patch_size
    grid = torch.tensor([[1, rows * merge, cols * merge]])
    n_patches = int(grid.prod())
    pixel_values = torch.randn(n_patches, vision.in_channels * temporal * patch * patch, generator=generator)
    visual = [config.vision_start_token_id] + [config.image_token_id] * (rows * cols)
    if config.vision_end_token_id < config.get_text_config().vocab_size:  # small models may lack it
        visual.append(config.vision_end_token_id)
    before = text_tokens // 2
    input_ids = _sandwich(config, before, visual, text_tokens - before - (len(visual) - rows * cols), generator)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": pixel_values,
        "image_grid_thw": grid,
        "mm_token_type_ids": (input_ids == config.image_token_id).int(),
    }


def llava_onevision_tokens(model, height: int, width: int) -> int:
    """Visual tokens of an image of `height` x `width` pixels: the model's own packing, on zeros."""
    config = model.config
    side = config.vision_config.image_size
    n_patches = image_size_to_num_patches((height, width), config.image_grid_pinpoints, side)
    per_patch = (side // config.vision_config.patch_size) ** 2
    zeros = torch.zeros(n_patches, per_patch, model.model.image_newline.shape[0], dtype=model.dtype)
    _, lengths = model.model.pack_image_features(
        [zeros], torch.tensor([[height, width]]), model.model.image_newline, config.vision_aspect_ratio
    )
    return int(lengths[0])


def llava_onevision_inputs(model, visual_tokens: int, text_tokens: int, generator) -> dict:
    """LLaVA-OneVision: one anyres image whose packed token count is closest to `visual_tokens`."""
    config = model.config
    side = config.vision_config.image_size
    candidates = [(height, width) for width in (side, 2 * side, 3 * side) for height in range(28, width + 1, 28)]
    counts = {size: llava_onevision_tokens(model, *size) for size in candidates}
    height, width = min(candidates, key=lambda size: abs(counts[size] - visual_tokens))
    n_patches = image_size_to_num_patches((height, width), config.image_grid_pinpoints, side)
    pixel_values = torch.randn(1, n_patches, 3, side, side, generator=generator)
    before = text_tokens // 2
    input_ids = _sandwich(config, before, [config.image_token_id] * counts[height, width], text_tokens - before, generator)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": pixel_values,
        "image_sizes": torch.tensor([[height, width]]),
    }


def synthetic_inputs(model, visual_tokens: int, text_tokens: int = 32, seed: int = 0) -> dict:
    """Batch-1 model inputs with one image of about `visual_tokens` tokens and `text_tokens` others."""
    generator = torch.Generator().manual_seed(seed)
    model_type = model.config.model_type
    if model_type in QWEN_MODEL_TYPES:
        return qwen_inputs(model, visual_tokens, text_tokens, generator)
    if model_type == "llava_onevision":
        return llava_onevision_inputs(model, visual_tokens, text_tokens, generator)
    raise ExplainPruneError(f"no benchmark inputs for model type {model_type!r}; supported: qwen2_vl, qwen2_5_vl, llava_onevision")
