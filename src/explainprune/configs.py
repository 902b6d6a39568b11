"""Config dataclasses as command-line options and as JSON saved next to a run's output.

A field's `metadata["help"]` becomes its option's help; `--field-name` is the option; tuples of ints or
floats are written comma-separated (`--attention-layers 1,2`); booleans take `--flag/--no-flag`. Optional
metadata: "type" (a parser of `explainprune.options`, e.g. `positive_int`, also used by `check_config` on
values given from Python), "choices", and "resumable" (the field may change when a run resumes).
A field without a default is a required option; `X | None` fields default to None.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path

from .errors import ExplainPruneError


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser_for(name: str, kind):
    """A function parsing one option's text into `kind` with a one-line error naming the option."""
    option = _option(name)

    def number(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{option} must be finite, got {text!r}")
        return value

    def numbers(text: str):
        element = typing.get_args(kind)[0]
        return tuple(_parser_for(name, element)(part) for part in text.split(",") if part.strip())

    if _optional(kind) is not None:
        return _parser_for(name, _optional(kind))
    if kind in (int, float):
        return number
    if typing.get_origin(kind) is tuple:
        return numbers
    return kind


def _optional(kind):
    """X for `X | None` (or Optional[X]), else None."""
    arguments = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(arguments) == 2 and type(None) in arguments:
        return next(a for a in arguments if a is not type(None))
    return None


def _field_parser(field: dataclasses.Field, kind):
    return field.metadata.get("type") or _parser_for(field.name, kind)


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
        if default is dataclasses.MISSING:
            parser.add_argument(_option(field.name), type=_field_parser(field, kind), required=True, help=help_text,
                                choices=field.metadata.get("choices"))  # fmt: skip
            continue
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(
            _option(field.name), type=_field_parser(field, kind), default=default, choices=field.metadata.get("choices"),
            help=f"{help_text} (default: {shown})",
        )  # fmt: skip


def check_config(config) -> None:
    """Refuse field values their command-line option would refuse (for configs made in Python)."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value, kind = getattr(config, field.name), hints[field.name]
        where = f"{type(config).__name__}.{field.name}"
        if value is None and _optional(kind) is not None:
            continue
        if (_optional(kind) or kind) is str and not isinstance(value, str):
            raise ExplainPruneError(f"{where} must be a string, got {value!r}")
        if kind is bool or _optional(kind) is bool:
            if not isinstance(value, bool):
                raise ExplainPruneError(f"{where} must be True or False, got {value!r}")
            continue
        if kind in (int, float) or _optional(kind) in (int, float) or "type" in field.metadata:
            number_kind = _optional(kind) or kind
            if isinstance(value, bool) or (number_kind in (int, float) and not isinstance(value, (int, float))):
                raise ExplainPruneError(f"{where} must be {'an integer' if number_kind is int else 'a number'}, got {value!r}")
            try:
                parsed = _field_parser(field, number_kind)(str(value))
            except argparse.ArgumentTypeError as error:
                raise ExplainPruneError(f"{where}: {error}") from None
            if parsed != value:
                raise ExplainPruneError(f"{where} must be {'an integer' if number_kind is int else 'a number'}, got {value!r}")
        if field.metadata.get("choices") and value not in field.metadata["choices"]:
            raise ExplainPruneError(f"{where} must be one of {', '.join(map(str, field.metadata['choices']))}, got {value!r}")


def changed_settings(saved: dict, config) -> list[str]:
    """The fields of `config` whose value differs from the `saved` one (JSON), resumable fields aside."""
    values = json.loads(json.dumps(dataclasses.asdict(config)))
    return [
        f.name for f in dataclasses.fields(config) if not f.metadata.get("resumable") and saved.get(f.name) != values[f.name]
    ]


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
