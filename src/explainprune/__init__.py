"""explainprune: explainability-guided visual token compression for multimodal LLMs."""

from .compressor import Compressor, Prepared, PruneStats
from .embedded import load_embedded
from .errors import ExplainPruneError, InputMismatchError, UnsupportedModelError
from .scoring import SCORERS, Scorer, register

__all__ = [
    "Compressor",
    "ExplainPruneError",
    "InputMismatchError",
    "Prepared",
    "PruneStats",
    "SCORERS",
    "Scorer",
    "UnsupportedModelError",
    "load_embedded",
    "register",
]
