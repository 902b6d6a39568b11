"""`explainprune lmms-eval`: options."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..options import add_device_options, add_keep_option, add_scorers_option, comma_list, output_dir, positive_int

HELP = "retention of scorers x keep ratios on lmms-eval tasks (model loaded once)"
RUN = "explainprune.integrations.lmms_eval.sweep:main"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=comma_list, required=True, help="comma-separated lmms-eval task names, e.g. mmstar")
    parser.add_argument("--model", default="embedded", help="'embedded' or a save_pretrained directory")
    add_keep_option(parser, "1,0.5,0.25")
    add_scorers_option(parser, "learned,layer0,uniform,random")
    parser.add_argument("--predictor", help="predictor directory for the scorers that take one (learned, learned-mmr, learned-coverage; default: the model's shipped one)")
    parser.add_argument("--include-path", type=Path, help="folder of extra task YAMLs (e.g. from `explainprune export-task`)")
    parser.add_argument("--out", type=output_dir, required=True, help="folder for results.json and every run's lmms-eval output")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N documents of each task")
    parser.add_argument("--metric", help="per-document metric for retention (default: the task's first metric every document scores)")
    parser.add_argument("--force-simple", action="store_true", help="use the simple interface (needed for multiple-choice tasks)")
    add_device_options(parser)
