"""The embedded Qwen2-VL model shipped with the package (trained here from scratch)."""

from __future__ import annotations

from pathlib import Path

import torch

EMBEDDED_DIR = Path(__file__).resolve().parent / "model"
PREDICTOR_DIR = Path(__file__).resolve().parent / "predictor"
"""The image predictor shipped for the embedded model: the `learned` scorer's default for its images."""
VIDEO_PREDICTOR_DIR = Path(__file__).resolve().parent / "predictor-video"
"""The video predictor (3-D grid input) for the embedded model: the `learned` scorer's default for its clips."""
PREDICTOR_DIRS = {"image": PREDICTOR_DIR, "video": VIDEO_PREDICTOR_DIR}


def load_embedded(dtype: torch.dtype = torch.float32):
    """(model, processor) of the shipped embedded model, in eval mode."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if not (EMBEDDED_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"embedded model not found at {EMBEDDED_DIR}; train it with "
            "`python -m explainprune.embedded.train --out <dir>` and copy the directory there"
        )
    model = AutoModelForImageTextToText.from_pretrained(EMBEDDED_DIR, dtype=dtype).eval()
    processor = AutoProcessor.from_pretrained(EMBEDDED_DIR)
    processor.tokenizer.padding_side = "left"
    return model, processor


__all__ = ["EMBEDDED_DIR", "PREDICTOR_DIR", "PREDICTOR_DIRS", "VIDEO_PREDICTOR_DIR", "load_embedded"]
