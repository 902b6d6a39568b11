"""The vLLM plugin's vLLM-free parts: M-RoPE layout, position channels, deployment settings.
(The engine itself is tested in tests/vllm, in the vLLM venv.)"""

from __future__ import annotations

import pytest
import torch
from conftest import image, image_inputs, load_tiny, video_inputs
from hypothesis import given
from hypothesis import strategies as st

from explainprune import Compressor, ExplainPruneError
from explainprune.integrations.vllm import ARCHITECTURES, PruneSettings, hf_overrides
from explainprune.integrations.vllm.positions import decode_positions, encode_positions, mrope_positions


@pytest.mark.parametrize("family, make_inputs", [
    ("qwen2-vl", lambda p: image_inputs(p, [image(150, 100, 1)])),
    ("qwen2-vl", lambda p: video_inputs(p, [torch.zeros(4, 56, 56, 3, dtype=torch.uint8).numpy()])),
    ("qwen2.5-vl", lambda p: video_inputs(p, [torch.zeros(6, 56, 56, 3, dtype=torch.uint8).numpy()])),
])  # fmt: skip
def test_mrope_positions_equal_the_models_own(tiny_dirs, family, make_inputs):
    model, processor = load_tiny(tiny_dirs, family)
    inputs = make_inputs(processor)
    encoded = Compressor(model, processor).encode(**inputs)
    (span,) = encoded.spans[0]
    ((t, h, w),) = span.grids
    t_factor = 1.0
    if "second_per_grid_ts" in inputs:
        t_factor = float(inputs["second_per_grid_ts"][0]) * model.config.vision_config.tokens_per_second
        assert t_factor != 1.0  # the case where Qwen2.5-VL spaces frames by time
    ours = mrope_positions(encoded.input_ids.shape[1], [(int(span.positions[0]), t, h, w, t_factor)])
    assert torch.equal(ours, encoded.position_ids[:, 0])


@given(st.lists(st.integers(0, 256**3 - 1), min_size=3, max_size=30).filter(lambda v: len(v) % 3 == 0))
def test_position_channels_are_exact_in_every_dtype(values):
    positions = torch.tensor(values).view(3, -1)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        assert torch.equal(decode_positions(encode_positions(positions, dtype)), positions)


def test_hf_overrides_select_our_architecture_and_settings():
    overrides = hf_overrides("qwen2_5_vl", "layer0", 0.25)
    assert overrides == {"architectures": [ARCHITECTURES["qwen2_5_vl"]], "explainprune_scorer": "layer0",
                         "explainprune_keep_ratio": 0.25}  # fmt: skip

    class Config:
        explainprune_scorer = "uniform"
        explainprune_keep_ratio = 0.5

    assert PruneSettings.from_config(Config()) == PruneSettings("uniform", 0.5)
    assert PruneSettings("learned").modalities() == ("image",)  # the embedded predictor is image-only
    assert PruneSettings("layer0").modalities() == ("image", "video")


@pytest.mark.parametrize("arguments, message", [
    (("gae",), "not available in vLLM"),
    (("fastv",), "not available in vLLM"),
    (("layer0", 0.0), "keep_ratio must be in"),
    (("layer0", 0.5, "some/dir"), "takes no predictor"),
    (("learned", 0.5, "no/such/dir"), "not a predictor directory"),
])  # fmt: skip
def test_bad_settings_are_refused_in_one_line(arguments, message):
    with pytest.raises(ExplainPruneError, match=message):
        PruneSettings(*arguments)


def test_unsupported_model_type_is_refused():
    with pytest.raises(ExplainPruneError, match="cannot be pruned in vLLM"):
        hf_overrides("llava_onevision")
