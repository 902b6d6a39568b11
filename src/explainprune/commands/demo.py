"""`explainprune demo`: options."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..options import add_device_options, positive_int

HELP = "show pruning on the embedded model and print its eval table"
RUN = "explainprune.demo:main"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=positive_int, default=200, help="held-out questions in the eval table")
    parser.add_argument("--out", type=Path, default=Path("explainprune-demo"), help="output directory")
    add_device_options(parser)
