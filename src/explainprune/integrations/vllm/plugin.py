"""The `vllm.general_plugins` entry point: vLLM calls `register()` in every process it starts."""

from __future__ import annotations

from .settings import ARCHITECTURES

MODEL_MODULE = "explainprune.integrations.vllm.model"


def register() -> None:
    """Make our architectures known to vLLM (idempotent; the model module loads only when used)."""
    from vllm import ModelRegistry

    for architecture in ARCHITECTURES.values():
        if architecture not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(architecture, f"{MODEL_MODULE}:{architecture}")
