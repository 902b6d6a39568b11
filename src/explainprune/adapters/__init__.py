"""Model-family adapters: where the visual tokens are, their grids and the positions the model uses."""

from __future__ import annotations

from ..errors import UnsupportedModelError
from .base import Adapter, EncodedBatch, VisualSpan
from .llava import LlavaAdapter
from .llava_onevision import LlavaOnevisionAdapter
from .qwen2_5_vl import Qwen25VLAdapter
from .qwen2_vl import Qwen2VLAdapter

ADAPTERS: tuple[type[Adapter], ...] = (Qwen2VLAdapter, Qwen25VLAdapter, LlavaOnevisionAdapter, LlavaAdapter)


def get_adapter(model) -> Adapter:
    """The adapter for `model`'s family, or an error listing the supported families."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for adapter_class in ADAPTERS:
        if model_type in adapter_class.model_types:
            return adapter_class(model)
    supported = ", ".join(f"{a.family} ({'/'.join(a.model_types)})" for a in ADAPTERS)
    raise UnsupportedModelError(
        f"model type {model_type!r} ({type(model).__name__}) is not supported; supported families: {supported}"
    )


__all__ = ["ADAPTERS", "Adapter", "EncodedBatch", "VisualSpan", "get_adapter"]
