"""Benchmark architectures: the public checkpoints' shapes with random weights (no downloads).

The configs are written from the public config.json files of Qwen/Qwen2-VL-2B-Instruct,
Qwen/Qwen2.5-VL-3B-Instruct and llava-hf/llava-onevision-qwen2-0.5b-ov-hf; `embedded` is the
project's own small model. Weights are random: timings and sizes depend on shapes only.
"""

from __future__ import annotations

import torch
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.initialization import no_init_weights

from ..errors import ExplainPruneError
from ..tiny import build_tiny

_QWEN_TOKENS = dict(
    bos_token_id=151643, eos_token_id=151645, pad_token_id=151643,
    image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
)  # fmt: skip
_QWEN_ROPE = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}


def _qwen_text(hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, max_position_embeddings):
    return dict(
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=max_position_embeddings,
        rms_norm_eps=1e-6,
        hidden_act="silu",
        tie_word_embeddings=True,
        use_sliding_window=False,
        rope_parameters=_QWEN_ROPE,
        bos_token_id=151643,
        eos_token_id=151645,
    )


def qwen2_vl_2b(layers: int | None = None) -> Qwen2VLConfig:
    text = _qwen_text(1536, 8960, layers or 28, 12, 32768)
    vision = dict(
        depth=32, embed_dim=1280, hidden_size=1536, mlp_ratio=4, num_heads=16, hidden_act="quick_gelu",
        in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
    )  # fmt: skip
    return Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **_QWEN_TOKENS)


def qwen2_5_vl_3b(layers: int | None = None) -> Qwen2_5_VLConfig:
    text = _qwen_text(2048, 11008, layers or 36, 16, 128000)
    vision = dict(
        depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, hidden_act="silu", out_hidden_size=2048,
        in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2,
    )  # fmt: skip
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **_QWEN_TOKENS)


def llava_onevision_0_5b(layers: int | None = None) -> LlavaOnevisionConfig:
    text = dict(
        model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=layers or 24,
        num_attention_heads=14, num_key_value_heads=2, vocab_size=152000, max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1000000.0, hidden_act="silu", tie_word_embeddings=True,
        use_sliding_window=False, bos_token_id=151643, eos_token_id=151645,
    )  # fmt: skip
    vision = dict(
        model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304, num_hidden_layers=26,
        num_attention_heads=16, image_size=384, patch_size=14, vision_use_head=False,
    )  # fmt: skip
    pinpoints = [[384 * rows, 384 * cols] for rows in range(1, 7) for cols in range(1, 7)]
    return LlavaOnevisionConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=151646,
        video_token_id=151647,
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9",
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        tie_word_embeddings=True,
        pad_token_id=151643,
    )


_RANDOM = {
    "qwen2-vl-2b": (qwen2_vl_2b, Qwen2VLForConditionalGeneration),
    "qwen2.5-vl-3b": (qwen2_5_vl_3b, Qwen2_5_VLForConditionalGeneration),
    "llava-onevision-0.5b": (llava_onevision_0_5b, LlavaOnevisionForConditionalGeneration),
}
_TINY = ("tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-llava-onevision")  # seconds-long smoke runs
ARCHITECTURES = (*_RANDOM, "embedded", *_TINY)


@torch.no_grad()
def fill_random(model, std: float = 0.02, seed: int = 0, pool_size: int = 999_983) -> None:
    """Cheap random weights: norm scales 1, biases 0, everything else N(0, std) values copied
    from one random pool of prime length (memcpy speed; rows differ as the pool does not align)."""
    generator = torch.Generator().manual_seed(seed)
    pool = torch.randn(pool_size, generator=generator) * std
    for name, parameter in model.named_parameters():
        if name.endswith("bias"):
            parameter.zero_()
        elif "norm" in name and parameter.ndim == 1:
            parameter.fill_(1.0)
        else:
            flat = parameter.view(-1)
            source = pool.to(parameter.dtype)
            for start in range(0, flat.numel(), pool_size):
                chunk = flat[start : start + pool_size]
                chunk.copy_(source[: chunk.numel()])


def build_model(
    arch: str,
    dtype: torch.dtype = torch.bfloat16,
    layers: int | None = None,
    device: torch.device | str = "cpu",
    attn_implementation: str = "sdpa",
):
    """The model of `arch` in `dtype` on `device`, in eval mode; `layers` cuts the LLM depth."""
    return _build_on_cpu(arch, dtype, layers, attn_implementation).to(device)


def _build_on_cpu(arch: str, dtype: torch.dtype, layers: int | None, attn_implementation: str):
    if arch == "embedded":
        return _embedded(dtype, layers, attn_implementation)
    if arch in _TINY:
        if layers is not None:
            raise ExplainPruneError("--layers does not apply to the 2-layer tiny models")
        model, _ = build_tiny(arch.removeprefix("tiny-"))
        model.set_attn_implementation(attn_implementation)
        return model.to(dtype).eval()
    if arch not in _RANDOM:
        raise ExplainPruneError(f"unknown benchmark architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    make_config, model_class = _RANDOM[arch]
    config = make_config(layers)
    with no_init_weights():
        model = model_class._from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    fill_random(model)
    return model.eval()


def _embedded(dtype: torch.dtype, layers: int | None, attn_implementation: str):
    from ..embedded import load_embedded

    model, _ = load_embedded(dtype, "cpu", attn_implementation)
    if layers is not None:
        text = model.config.text_config
        if not 0 < layers <= text.num_hidden_layers:
            raise ExplainPruneError(f"--layers must be in 1..{text.num_hidden_layers} for the embedded model")
        language_model = model.model.language_model
        language_model.layers = language_model.layers[:layers]
        text.num_hidden_layers = layers
        text.layer_types = text.layer_types[:layers]
    return model.eval()
