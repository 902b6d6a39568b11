"""Config dataclasses as command-line options and as JSON saved next to a run's output.

`--field-name` is each field's option, in the shared vocabulary of `explainprune.options`: an int field
takes an integer >= 0 and a float field a finite number >= 0 unless the field's `metadata["type"]` names
another parser (e.g. `options.positive_int`); tuples are comma-separated (`--attention-layers 1,2`);
`metadata["help"]` is the help. The dataclass checks its own values too, for use from Python.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path

from .errors import ExplainPruneError
from .options import non_negative_float, non_negative_int

DEFAULT_TYPES = {int: non_negative_int, float: non_negative_float}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _comma_separated(parse):
    def parse_all(text: str) -> tuple:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        return tuple(parse(part) for part in parts)

    parse_all.__name__ = f"comma-separated {parse.__name__}"
    return parse_all


def add_config_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One option per field of the dataclass `cls` (defaults from the class, help from the field)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind, default = hints[field.name], field.default
        if typing.get_origin(kind) is tuple:
            parse = _comma_separated(field.metadata.get("type", DEFAULT_TYPES[typing.get_args(kind)[0]]))
            shown = ",".join(map(str, default))
        else:
            parse, shown = field.metadata.get("type", DEFAULT_TYPES[kind]), default
        parser.add_argument(
            _option(field.name), type=parse, default=default, help=f"{field.metadata.get('help', '')} (default: {shown})"
        )


def check_config(config) -> None:
    """Refuse, naming the option, a field value that the field's option would refuse (for configs built in
    Python; call it from `__post_init__`)."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value, kind = getattr(config, field.name), hints[field.name]
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
        if not fits:
            what = f"comma-separated values, each {parse.__name__}" if is_tuple else parse.__name__
            raise ExplainPruneError(f"{_option(field.name)} must be {what}, got {value!r}")


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
