"""explainprune: explainability-guided visual token compression for multimodal LLMs."""

from .compressor import Compressor, PruneStats
from .errors import ExplainPruneError, InputMismatchError, UnsupportedModelError
from .scoring import SCORERS, Scorer, register

__all__ = [
    "Compressor",
    "ExplainPruneError",
    "InputMismatchError",
    "PruneStats",
    "SCORERS",
    "Scorer",
    "UnsupportedModelError",
    "register",
]
