"""`explainprune eval`: options."""

from __future__ import annotations

import argparse

from ..options import add_device_options, add_keep_option, add_scorer_option_option, add_scorers_option, comma_list, output_file, positive_int

HELP = "retention of scorers x keep ratios on a data set"
RUN = "explainprune.evaluate_cli:main"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="embedded", help="'embedded' or a save_pretrained directory")
    parser.add_argument("--data", default="synthetic:split=test,seed=0,n=500,size=224", help="data spec")
    add_keep_option(parser, "1,0.5,0.25,0.1")
    add_scorers_option(parser, "learned,layer0,uniform,random")
    parser.add_argument(
        "--predictor", type=comma_list,
        help="the learned scorer's predictor directory, or an image and a video predictor as DIR,DIR "
        "(default: the model's shipped ones)",
    )  # fmt: skip
    add_scorer_option_option(parser)
    parser.add_argument(
        "--reference", type=comma_list, default=[], metavar="SCORER[,SCORER]",
        help="also report each row's retention difference to these scorers (of --scorers), with paired 95%% intervals",
    )  # fmt: skip
    parser.add_argument(
        "--by-type", action="store_true",
        help="also report retention per question type (table, JSON 'by_type', Markdown); needs typed data",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=positive_int, default=16)
    add_device_options(parser)
    parser.add_argument("--json", type=output_file, help="write the report here")
    parser.add_argument("--plot", type=output_file, help="write a retention-vs-keep plot (PNG) here")
    parser.add_argument(
        "--markdown", type=output_file, help="write the retention table (and paired differences) as Markdown here"
    )
    parser.add_argument("--answers", type=output_file, help="write every answer here (JSON lines: id, scorer, keep_ratio, prediction, correct)")
