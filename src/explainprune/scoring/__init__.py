"""Token scoring strategies behind one registry; importing a module registers its scorer."""

from . import layer0, random, uniform  # noqa: F401  (registration)
from . import gae, learned  # noqa: F401  (registration)
from . import fastv  # noqa: F401  (registration)
from .base import SCORERS, Scorer, make_scorer, register, scorer_class

__all__ = ["SCORERS", "Scorer", "make_scorer", "register", "scorer_class"]
