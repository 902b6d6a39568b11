"""Checks of command-line values that need the scorer registry (run before any model is loaded)."""

from __future__ import annotations

from .scoring.base import scorer_class


def check_scorers(names: list[str]) -> list[str]:
    """The names, after refusing an unknown one with the list of known scorers."""
    for name in names:
        scorer_class(name)
    return names
