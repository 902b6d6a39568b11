"""Pruners that act inside the LLM (at a decoder layer's input) rather than on its input sequence."""

from .base import InLLMPruner
from . import dart, fastv  # noqa: F401  (registration)

__all__ = ["InLLMPruner"]
