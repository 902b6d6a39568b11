"""The embedded Qwen2-VL model shipped with the package (trained here from scratch)."""

from __future__ import annotations

from pathlib import Path

EMBEDDED_DIR = Path(__file__).resolve().parent / "model"
PREDICTOR_DIR = Path(__file__).resolve().parent / "predictor"
"""The image predictor shipped for the embedded model: the `learned` scorer's default for its images."""
VIDEO_PREDICTOR_DIR = Path(__file__).resolve().parent / "predictor-video"
"""The video predictor (3-D grid input) for the embedded model: the `learned` scorer's default for its clips."""
PREDICTOR_DIRS = {"image": PREDICTOR_DIR, "video": VIDEO_PREDICTOR_DIR}


def load_embedded(
    dtype="fp32",
    device=None,
    attn_implementation: str | None = None,
):
    """(model, processor) of the shipped embedded model, in eval mode (see `loading.load_pretrained`)."""
    from ..loading import load_pretrained

    if not (EMBEDDED_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"embedded model not found at {EMBEDDED_DIR}; train it with "
            "`explainprune embedded train --out <dir>` and copy the directory there"
        )
    return load_pretrained(EMBEDDED_DIR, device, dtype, attn_implementation)


__all__ = ["EMBEDDED_DIR", "PREDICTOR_DIR", "PREDICTOR_DIRS", "VIDEO_PREDICTOR_DIR", "load_embedded"]
