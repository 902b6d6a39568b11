"""Token scoring strategies behind one registry; importing a module registers its scorer."""

from .base import SCORERS, Scorer, make_scorer, register, scorer_class
from . import cdpruner, dart, divprune, gae, layer0, learned, learned_mmr, mask_oracle, random, scope, uniform, visionzip, vispruner  # noqa: F401  (registration)
from .. import inllm  # noqa: F401  (in-LLM pruners share the registry)

__all__ = ["SCORERS", "Scorer", "make_scorer", "register", "scorer_class"]
