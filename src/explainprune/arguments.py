"""List arguments shared by the subcommands: comma-separated keep ratios and scorer names."""

from __future__ import annotations

from .errors import ExplainPruneError
from .scoring.base import scorer_class


def keep_ratio_list(text: str) -> list[float]:
    """'1,0.5,0.25' -> [1.0, 0.5, 0.25]; every ratio in (0, 1]."""
    try:
        ratios = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ExplainPruneError(f"--keep must be comma-separated numbers in (0, 1], got {text!r}") from None
    if not ratios or any(not 0.0 < r <= 1.0 for r in ratios):
        raise ExplainPruneError(f"--keep ratios must be in (0, 1], got {text!r}")
    return ratios


def scorer_list(text: str) -> list[str]:
    """'layer0,random' -> ['layer0', 'random'], failing fast on an unknown name."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ExplainPruneError(f"--scorers must name at least one scorer, got {text!r}")
    for name in names:
        scorer_class(name)
    return names


def option_value(text: str):
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def scorer_options(items: list[str], scorers: list[str]) -> dict[str, dict]:
    """['learned-mmr.mmr_lambda=0.5'] -> {'learned-mmr': {'mmr_lambda': 0.5}}; the scorer must be listed."""
    options: dict[str, dict] = {}
    for item in items:
        target, eq, value = item.partition("=")
        name, dot, key = target.rpartition(".")
        if not eq or not dot or not name or not key:
            raise ExplainPruneError(f"--option must look like SCORER.KEY=VALUE (e.g. dart.layer=3), got {item!r}")
        if name not in scorers:
            raise ExplainPruneError(f"--option {item!r} names scorer {name!r}, which is not in --scorers ({', '.join(scorers)})")
        options.setdefault(name, {})[key] = option_value(value)
    return options
