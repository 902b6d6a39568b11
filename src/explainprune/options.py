"""The command line's shared option vocabulary: one spelling and one check for every subcommand.

Light on purpose (argparse only): `explainprune --help` builds every subcommand's parser from these
without importing torch. Values that need torch to check (is `--device cuda:3` present?) are
checked when the command runs, by `explainprune.devices`.
"""

from __future__ import annotations

import argparse
import math

from .errors import ExplainPruneError
from .paths import output_directory
from .paths import output_file as output_file_path

DTYPES = ("bf16", "fp16", "fp32")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


def comma_list(text: str) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c'] (at least one name)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    return names


def keep_ratios(text: str) -> list[float]:
    """'1,0.5,0.25' -> [1.0, 0.5, 0.25]: distinct ratios in (0, 1]."""
    try:
        ratios = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in (0, 1], e.g. 1,0.5,0.25, got {text!r}") from None
    if not ratios or any(not 0.0 < r <= 1.0 for r in ratios):
        raise argparse.ArgumentTypeError(f"keep ratios must be in (0, 1], e.g. 1,0.5,0.25, got {text!r}")
    if len(set(ratios)) != len(ratios):
        raise argparse.ArgumentTypeError(f"keep ratios must be distinct, got {text!r}")
    return ratios


def _bounded(kind: type, minimum: float, description: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}") from None
        if (isinstance(value, float) and not math.isfinite(value)) or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        return value

    parse.__name__ = description  # argparse names the type in its messages
    return parse


positive_int = _bounded(int, 1, "an integer >= 1")
non_negative_int = _bounded(int, 0, "an integer >= 0")
non_negative_float = _bounded(float, 0.0, "a finite number >= 0")
positive_float = _bounded(float, math.ulp(0.0), "a finite number > 0")
non_negative_float = _bounded(float, 0.0, "a finite number >= 0")


def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _path_type(check, description: str):
    def parse(text: str):
        if not text.strip():
            raise argparse.ArgumentTypeError(f"expected {description}, got an empty path")
        try:
            return check(text)
        except ExplainPruneError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = description
    return parse


output_dir = _path_type(output_directory, "an output directory")
output_file = _path_type(output_file_path, "an output file")


def add_device_options(parser: argparse.ArgumentParser, dtype: str = "fp32", attention: bool = True) -> None:
    """--device, --dtype and (for commands that run the multimodal model) --attn-implementation."""
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cuda, cuda:1, cpu (default: cuda if available, else cpu)"
    )
    parser.add_argument("--dtype", choices=DTYPES, default=dtype, help=f"precision (default: {dtype})")
    if attention:
        parser.add_argument(
            "--attn-implementation", choices=ATTN_IMPLEMENTATIONS, default=None,
            help="the model's attention kernel (default: the model's own choice, usually sdpa)",
        )  # fmt: skip


def add_keep_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--keep", type=keep_ratios, default=keep_ratios(default), help=f"comma-separated keep ratios (default: {default})")


def add_scorers_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--scorers", type=comma_list, default=comma_list(default), help=f"comma-separated scorer names (default: {default})")


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


def scorer_option(text: str) -> tuple[str, str, object]:
    """'learned-mmr.mmr_lambda=0.5' -> ('learned-mmr', 'mmr_lambda', 0.5)."""
    target, eq, value = text.partition("=")
    name, dot, key = target.rpartition(".")
    if not eq or not dot or not name or not key:
        raise argparse.ArgumentTypeError(f"expected SCORER.KEY=VALUE, e.g. dart.layer=3, got {text!r}")
    return name, key, option_value(value)


def add_scorer_option_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--option", type=scorer_option, action="append", default=[], metavar="SCORER.KEY=VALUE",
        help="a scorer's option, e.g. learned-mmr.mmr_lambda=0.5 or dart.layer=3 (repeatable)",
    )  # fmt: skip


def group_scorer_options(items: list[tuple[str, str, object]], scorers: list[str]) -> dict[str, dict]:
    """--option values as {scorer: {key: value}}, each naming one of `scorers`."""
    options: dict[str, dict] = {}
    for name, key, value in items:
        if name not in scorers:
            raise argparse.ArgumentTypeError(f"--option {name}.{key}: scorer {name!r} is not in --scorers ({', '.join(scorers)})")
        options.setdefault(name, {})[key] = value
    return options
