"""Model-family adapters: where the visual tokens are, their grids and the positions the model uses.

A family is registered under each `config.model_type` it handles; a third party adds one through the
entry-point group `explainprune.adapters` (name = the model_type, object = the Adapter subclass).
"""

from __future__ import annotations

from ..errors import UnsupportedModelError
from ..registry import Registry
from .base import Adapter, EncodedBatch, VisualSpan
from .llava import LlavaAdapter
from .llava_onevision import LlavaOnevisionAdapter
from .qwen2_5_vl import Qwen25VLAdapter
from .qwen2_vl import Qwen2VLAdapter

ADAPTERS: Registry = Registry("adapter", entry_point_group="explainprune.adapters")
for _family in (Qwen2VLAdapter, Qwen25VLAdapter, LlavaOnevisionAdapter, LlavaAdapter):
    for _model_type in _family.model_types:
        ADAPTERS.add(_model_type, _family)


def get_adapter(model) -> Adapter:
    """The adapter for `model`'s family, or an error listing the supported families."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in ADAPTERS:
        return ADAPTERS.get(model_type)(model)
    families = {cls: [] for _, cls in ADAPTERS.items()}
    for handled_type, cls in ADAPTERS.items():
        families[cls].append(handled_type)
    supported = ", ".join(f"{cls.family} ({'/'.join(types)})" for cls, types in families.items())
    raise UnsupportedModelError(
        f"model type {model_type!r} ({type(model).__name__}) is not supported; supported families: {supported}"
    )


__all__ = ["ADAPTERS", "Adapter", "EncodedBatch", "VisualSpan", "get_adapter"]
