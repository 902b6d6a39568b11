"""Config dataclasses as command-line options and as JSON saved next to a run's output.

`--field-name` is each field's option, in the shared vocabulary of `explainprune.options`: an int field
takes an integer >= 0 and a float field a finite number >= 0 unless the field's `metadata["type"]` names
another parser (e.g. `options.positive_int`); tuples are comma-separated (`--attention-layers 1,2`); a
str field takes any text, or one of `metadata["choices"]`; a bool field is `--flag/--no-flag`; an
`X | None` field defaults to None; a field without a default is a required option. `metadata["help"]`
is the help; `metadata["resumable"]` marks a setting a resumed run may change (`changed_settings`).
The dataclass checks its own values too, for use from Python.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path

from .errors import ExplainPruneError
from .options import non_negative_float, non_negative_int


def text(value: str) -> str:
    return value


text.__name__ = "a string"
DEFAULT_TYPES = {int: non_negative_int, float: non_negative_float, str: text}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _optional(kind):
    """X for `X | None`, else None."""
    arguments = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(arguments) == 2 and type(None) in arguments:
        return next(a for a in arguments if a is not type(None))
    return None


def _comma_separated(parse):
    def parse_all(text: str) -> tuple:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return tuple(parse(part) for part in parts)

    parse_all.__name__ = f"comma-separated {parse.__name__}"
    return parse_all


def add_config_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One option per field of the dataclass `cls` (defaults from the class, help from the field), but
    those in `skip` (options the command adds itself, e.g. `options.add_device_options`)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        kind, default = _optional(hints[field.name]) or hints[field.name], field.default
        help_text = field.metadata.get("help", "")
        if kind is bool:
            parser.add_argument(_option(field.name), action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        if typing.get_origin(kind) is tuple:
            parse = _comma_separated(field.metadata.get("type", DEFAULT_TYPES[typing.get_args(kind)[0]]))
            shown = ",".join(map(str, default))
        else:
            parse, shown = field.metadata.get("type", DEFAULT_TYPES[kind]), default
        if default is dataclasses.MISSING:
            options = {"required": True, "help": help_text}
        else:
            options = {"default": default, "help": f"{help_text} (default: {shown})"}
        parser.add_argument(_option(field.name), type=parse, choices=field.metadata.get("choices"), **options)


def check_config(config) -> None:
    """Refuse, naming the option, a field value that the field's option would refuse (for configs built in
    Python; call it from `__post_init__`)."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value, kind = getattr(config, field.name), hints[field.name]
        if value is None and _optional(kind) is not None:
            continue
        kind = _optional(kind) or kind
        if kind is bool:
            if not isinstance(value, bool):
                raise ExplainPruneError(f"{_option(field.name)} must be True or False, got {value!r}")
            continue
        is_tuple = typing.get_origin(kind) is tuple
        element = typing.get_args(kind)[0] if is_tuple else kind
        parse = field.metadata.get("type", DEFAULT_TYPES[element])
        values = (list(value) if isinstance(value, tuple) else []) if is_tuple else [value]
        fits = bool(values) and all(
            not isinstance(v, bool) and (isinstance(v, element) or (element is float and isinstance(v, int))) for v in values
        )
        try:
            for v in values if fits else []:
                parse(str(v))
        except argparse.ArgumentTypeError:
            fits = False
        choices = field.metadata.get("choices")
        if fits and choices is not None and value not in choices:
            raise ExplainPruneError(f"{_option(field.name)} must be one of {', '.join(map(str, choices))}, got {value!r}")
        if not fits:
            what = f"comma-separated values, each {parse.__name__}" if is_tuple else parse.__name__
            raise ExplainPruneError(f"{_option(field.name)} must be {what}, got {value!r}")


def changed_settings(saved: dict, config) -> list[str]:
    """The fields of `config` whose value differs from the `saved` one (as JSON), resumable fields aside."""
    values = json.loads(json.dumps(dataclasses.asdict(config)))
    return [f.name for f in dataclasses.fields(config) if not f.metadata.get("resumable") and saved.get(f.name) != values[f.name]]


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
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ExplainPruneError(f"{path}: unknown setting(s) {unknown} for {cls.__name__}")
    return cls(**{k: tuple(v) if typing.get_origin(hints[k]) is tuple else v for k, v in values.items()})
