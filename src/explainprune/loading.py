"""Load a model and its processor from `embedded` or a save_pretrained directory (never the hub)."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import ExplainPruneError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "fp32": torch.float32}


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ExplainPruneError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def load_model(spec: str, dtype: torch.dtype = torch.float32):
    """(model, processor): `spec` is 'embedded' or a local directory written by save_pretrained."""
    if spec == "embedded":
        from .embedded import load_embedded

        return load_embedded(dtype)
    directory = Path(spec)
    if not (directory / "config.json").is_file():
        raise ExplainPruneError(
            f"--model {spec!r}: not 'embedded' and not a model directory (no config.json there); "
            f"models are loaded from a local save_pretrained directory, never downloaded"
        )
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        model = AutoModelForImageTextToText.from_pretrained(directory, dtype=dtype).eval()
        processor = AutoProcessor.from_pretrained(directory)
    except (OSError, ValueError) as error:
        raise ExplainPruneError(f"could not load a multimodal model from {directory}: {error}") from error
    processor.tokenizer.padding_side = "left"
    return model, processor
