"""`explainprune eval`: options."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..options import add_device_options, comma_list, add_keep_option, add_scorer_option_option, add_scorers_option, positive_int

HELP = "retention of scorers x keep ratios on a data set"
RUN = "explainprune.evaluate_cli:main"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="embedded", help="'embedded' or a save_pretrained directory")
    parser.add_argument("--data", default="synthetic:split=test,seed=0,n=500,size=224", help="data spec")
    add_keep_option(parser, "1,0.5,0.25,0.1")
    add_scorers_option(parser, "learned,layer0,uniform,random")
    parser.add_argument("--predictor", help="the learned scorer's predictor directory, or an image and a video predictor as DIR,DIR (default: the model's shipped ones)")
    add_scorer_option_option(parser)
    parser.add_argument(
        "--reference", type=comma_list, default=[], metavar="SCORER[,SCORER]",
        help="also report each row's retention difference to these scorers (of --scorers), with paired 95%% intervals",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, default=16)
    add_device_options(parser)
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--plot", type=Path, help="write a retention-vs-keep plot (PNG) here")
    parser.add_argument("--answers", type=Path, help="write every answer here (JSON lines: id, scorer, keep_ratio, prediction, correct)")
