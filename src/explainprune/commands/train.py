"""`explainprune train`: options (every field of `PredictorTrainingConfig`, plus --out)."""

from __future__ import annotations

import argparse

from ..configs import add_config_arguments
from ..options import add_device_options, output_dir
from ..run_configs import DEVICE_OPTIONS, PredictorTrainingConfig

HELP = "train a relevance predictor on collected pairs"
RUN = "explainprune.predictor.train:main"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=output_dir, required=True, help="directory for the best checkpoint, metrics.json and training-config.json")
    add_config_arguments(parser, PredictorTrainingConfig, skip=DEVICE_OPTIONS)
    add_device_options(parser, attention=False)
