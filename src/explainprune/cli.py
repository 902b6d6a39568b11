"""The `explainprune` command line.

Parsers come from the light modules of `explainprune.commands` (no torch import), so `--help` is
fast; a subcommand's own module is imported only when it runs. A user mistake (bad option value,
bad data spec, missing file) ends in one line `explainprune CMD: error: ...` and exit code 2.
Set EXPLAINPRUNE_TRACEBACK=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .commands import COMMANDS, EMBEDDED_COMMANDS
from .errors import ExplainPruneError

USER_ERRORS = (ExplainPruneError, ValueError, OSError)  # ours, and the loaders' refusals (bad spec, file, image)


class UsageError(Exception):
    """A command-line argument argparse refused."""


class Parser(argparse.ArgumentParser):
    """argparse, but a refused argument is one line (no usage block) handled by `main`."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message}")


def _add(subparsers, name: str, module_name: str) -> None:
    module = importlib.import_module(module_name)
    parser = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
    module.add_arguments(parser)
    parser.set_defaults(run=module.RUN, command_name=parser.prog)


def build_parser() -> Parser:
    parser = Parser(prog="explainprune", description="Explainability-guided visual token compression for multimodal LLMs.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        _add(subparsers, name, module_name)
    embedded = subparsers.add_parser("embedded", help="the shipped embedded model").add_subparsers(
        dest="embedded_command", required=True
    )
    for name, module_name in EMBEDDED_COMMANDS.items():
        _add(embedded, name, module_name)
    return parser


def run(args: argparse.Namespace) -> int:
    """Import the subcommand's module and call its `main(args)`."""
    module_name, function = args.run.split(":")
    return getattr(importlib.import_module(module_name), function)(args) or 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        return run(args)
    except USER_ERRORS as error:
        if os.environ.get("EXPLAINPRUNE_TRACEBACK"):
            raise
        message = str(error) or type(error).__name__
        print(f"{args.command_name}: error: {' '.join(message.split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{args.command_name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
