"""`explainprune collect`: options (every field of `CollectConfig`, plus --out)."""

from __future__ import annotations

import argparse

from ..configs import add_config_arguments
from ..options import add_device_options, output_dir
from ..run_configs import DEVICE_OPTIONS, CollectConfig

HELP = "collect (layer-0 attention, relevance) training pairs"
RUN = "explainprune.collect:main"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=output_dir, required=True, help="output directory (resumed if it exists)")
    add_config_arguments(parser, CollectConfig, skip=DEVICE_OPTIONS)
    add_device_options(parser)
