"""Load a model and its processor from `embedded` or a save_pretrained directory (never the hub)."""

from __future__ import annotations

from pathlib import Path

import torch

from .devices import resolve_device, torch_dtype
from .errors import ExplainPruneError


def load_pretrained(
    directory: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "fp32",
    attn_implementation: str | None = None,
):
    """(model, processor) of a local save_pretrained directory: eval mode, on `device` in `dtype`,
    the processor padding on the left (as batched generation needs)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = resolve_device(device)
    options = {"dtype": torch_dtype(dtype)}
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForImageTextToText.from_pretrained(directory, **options).to(device).eval()
        processor = AutoProcessor.from_pretrained(directory)
    except (OSError, ValueError, ImportError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExplainPruneError(f"could not load a multimodal model from {directory}: {first_line}") from error
    processor.tokenizer.padding_side = "left"
    return model, processor


def load_model(
    spec: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "fp32",
    attn_implementation: str | None = None,
):
    """(model, processor): `spec` is 'embedded' or a local directory written by save_pretrained.

    `device` defaults to cuda if available, else cpu; `dtype` is 'bf16', 'fp16', 'fp32' or a
    torch.dtype; `attn_implementation` is 'sdpa', 'eager' or 'flash_attention_2' (default: the
    model's own).
    """
    if str(spec) == "embedded":
        from .embedded import load_embedded

        return load_embedded(dtype, device, attn_implementation)
    directory = Path(spec)
    if not (directory / "config.json").is_file():
        raise ExplainPruneError(
            f"--model {str(spec)!r}: not 'embedded' and not a model directory (no config.json there); "
            f"models are loaded from a local save_pretrained directory, never downloaded"
        )
    return load_pretrained(directory, device, dtype, attn_implementation)
