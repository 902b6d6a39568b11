"""Config dataclasses as command-line options and as JSON saved next to a run's output.

A field's `metadata["help"]` becomes its option's help; `--field-name` is the option; tuples of ints or
floats are written comma-separated (`--attention-layers 1,2`); booleans take `--flag/--no-flag`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path

from .errors import ExplainPruneError
from .options import non_negative_float, non_negative_int


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser_for(kind):
    """The option vocabulary's parser of one field type: counts are integers >= 0, numbers finite and
    >= 0, tuples comma-separated."""
    if kind is int:
        return non_negative_int
    if kind is float:
        return non_negative_float
    if typing.get_origin(kind) is tuple:
        element = _parser_for(typing.get_args(kind)[0])

        def items(text: str):
            return tuple(element(part) for part in text.split(",") if part.strip())

        items.__name__ = f"comma-separated {element.__name__}"
        return items
    return kind


def add_config_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One option per field of the dataclass `cls` (defaults from the class, help from the field)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        kind, default = hints[field.name], field.default
        help_text = field.metadata.get("help", "")
        if kind is bool:
            parser.add_argument(_option(field.name), action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(
            _option(field.name), type=_parser_for(kind), default=default, help=f"{help_text} (default: {shown})"
        )


def config_from_arguments(cls, args: argparse.Namespace):
    """The dataclass `cls` filled from parsed options (fields absent from `args` keep their defaults)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)})


def save_config(config, path: str | Path) -> None:
    """Write the config verbatim as JSON (tuples become lists)."""
    Path(path).write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")


def load_config(cls, path: str | Path):
    """Read a config written by `save_config`; unknown fields are refused by name, missing ones take defaults."""
    values = json.loads(Path(path).read_text())
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ExplainPruneError(f"{path}: unknown setting(s) {unknown} for {cls.__name__}")
    return cls(**{k: tuple(v) if typing.get_origin(hints[k]) is tuple else v for k, v in values.items()})
