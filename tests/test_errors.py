"""Bad input gets a clear error naming the problem."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import image, image_inputs, load_tiny
from transformers import Qwen2Config, Qwen2ForCausalLM

from explainprune import Compressor, ExplainPruneError, InputMismatchError, UnsupportedModelError


@pytest.fixture
def qwen(tiny_dirs):
    return load_tiny(tiny_dirs, "qwen2-vl")


@pytest.mark.parametrize("keep_ratio", [0, -0.5, 1.5, math.nan, "0.5", None, True])
def test_keep_ratio_out_of_range_or_not_a_number(qwen, keep_ratio):
    model, processor = qwen
    with pytest.raises(ExplainPruneError, match="keep_ratio must be"):
        Compressor(model, processor, keep_ratio=keep_ratio)


def test_unknown_scorer_lists_known_ones(qwen):
    with pytest.raises(ExplainPruneError, match=r"unknown scorer 'atention'; known scorers: .*layer0.*random.*uniform"):
        Compressor(qwen[0], qwen[1], scorer="atention")


def test_unknown_scorer_option_is_refused(qwen):
    with pytest.raises(ExplainPruneError, match=r"scorer 'random' does not take option\(s\) \['sed'\]; it takes: seed"):
        Compressor(qwen[0], qwen[1], scorer="random", sed=3)


def test_unsupported_model_lists_supported_families():
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(UnsupportedModelError, match=r"model type 'qwen2' .* supported families: qwen2-vl .*llava"):
        Compressor(model)


def test_token_ids_out_of_range(qwen):
    model, processor = qwen
    inputs = image_inputs(processor, [image(112, 112)])
    inputs["input_ids"][0, 2] = 10_000
    with pytest.raises(InputMismatchError, match="token id 10000 .* vocabulary has 300 entries"):
        Compressor(model, processor).prepare(**inputs)


def test_missing_pixel_values(tiny_dirs, family):
    model, processor = load_tiny(tiny_dirs, family)
    inputs = image_inputs(processor, [image(112, 112)])
    del inputs["pixel_values"]
    with pytest.raises(InputMismatchError, match="contains image tokens but no `pixel_values`"):
        Compressor(model, processor).prepare(**inputs)


def test_images_of_another_prompt(qwen):
    model, processor = qwen
    small = image_inputs(processor, [image(56, 56)])
    large = image_inputs(processor, [image(224, 224)])
    small["pixel_values"], small["image_grid_thw"] = large["pixel_values"], large["image_grid_thw"]
    with pytest.raises(InputMismatchError, match="placeholder tokens but .* were not processed together"):
        Compressor(model, processor).prepare(**small)


def test_missing_input_ids(qwen):
    model, processor = qwen
    with pytest.raises(InputMismatchError, match="input_ids are required"):
        Compressor(model, processor).prepare(attention_mask=torch.ones(1, 3))
