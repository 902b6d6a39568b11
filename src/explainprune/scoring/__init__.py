"""Token scoring strategies behind one registry; importing a module registers its scorer."""

from .base import SCORERS, Scorer, make_scorer, register, scorer_class, scorer_options
from . import (  # noqa: F401  (registration)
    cdpruner, dart, divprune, fastvid, gae, holitom, layer0, learned, learned_coverage, learned_mmr, mask_oracle, random,
    scope, uniform, visionzip, vispruner,
)
from .. import inllm  # noqa: F401  (in-LLM pruners share the registry)

__all__ = ["SCORERS", "Scorer", "make_scorer", "register", "scorer_class", "scorer_options"]
