"""`explainprune train`: options."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..options import add_device_options, fraction, non_negative_int, positive_float, positive_int

HELP = "train a relevance predictor on collected pairs"
RUN = "explainprune.predictor.train:main"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="data directory written by `explainprune collect`")
    parser.add_argument("--out", type=Path, required=True, help="directory for the best checkpoint and metrics.json")
    parser.add_argument("--arch", choices=("paper", "grid"), default="paper", help="paper: 1-D convs; grid: 2-D/3-D convs")
    parser.add_argument("--epochs", type=positive_int, default=20)
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--lr", type=positive_float, default=1e-3)
    parser.add_argument("--val-fraction", type=fraction, default=0.1)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    add_device_options(parser, attention=False)
