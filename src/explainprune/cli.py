"""The `explainprune` command line: demo, eval, collect, train, bench, embedded train."""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import ExplainPruneError

# subcommand -> (module with add_arguments/main, help)
COMMANDS = {
    "demo": ("explainprune.demo", "show pruning on the embedded model and print its eval table"),
    "eval": ("explainprune.evaluate_cli", "retention of scorers x keep ratios on a data set"),
    "collect": ("explainprune.collect", "collect (layer-0 attention, relevance) training pairs"),
    "train": ("explainprune.predictor.train", "train a relevance predictor on collected pairs"),
    "bench": ("explainprune.bench.cli", "measure what compression buys in wall-clock time"),
}
EMBEDDED_COMMANDS = {"train": ("explainprune.embedded.train", "reproduce the embedded model from a seed")}


def _add(subparsers, name: str, module: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    loaded = importlib.import_module(module)
    loaded.add_arguments(parser)
    parser.set_defaults(run=loaded.main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="explainprune", description="Explainability-guided visual token compression for multimodal LLMs."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        _add(subparsers, name, module, help_text)
    embedded = subparsers.add_parser("embedded", help="the shipped embedded model").add_subparsers(
        dest="embedded_command", required=True
    )
    for name, (module, help_text) in EMBEDDED_COMMANDS.items():
        _add(embedded, name, module, help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (ExplainPruneError, FileNotFoundError) as error:
        print(f"explainprune {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"explainprune {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
