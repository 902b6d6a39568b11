"""`explainprune embedded train`: options (every field of the recipe's `TrainingConfig`)."""

from __future__ import annotations

import argparse

from ..configs import add_config_arguments
from ..embedded.config import TrainingConfig
from ..options import positive_int

HELP = "reproduce the embedded model from a seed"
RUN = "explainprune.embedded.train:main"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory (resumes an unfinished run of the same settings)")
    add_config_arguments(parser, TrainingConfig)
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads (1 can be faster on a busy machine)")
