"""`explainprune embedded train`: options."""

from __future__ import annotations

import argparse

from ..options import non_negative_float, non_negative_int, output_dir, positive_float, positive_int

HELP = "reproduce the embedded model from a seed"
RUN = "explainprune.embedded.train:main"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=output_dir, required=True, help="output directory (resumes from its checkpoint.pt)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--vision-steps", type=non_negative_int, default=800, help="steps of the vision-only stage")
    parser.add_argument("--vision-lr", type=positive_float, default=3e-3)
    parser.add_argument("--steps", type=non_negative_int, default=6000, help="steps of the joint stage")
    parser.add_argument("--lr", type=positive_float, default=1.5e-3)
    parser.add_argument("--answer-steps", type=non_negative_int, default=0, help="steps of an optional last stage training the language model alone (vision tower frozen); the shipped model used none")
    parser.add_argument("--answer-lr", type=positive_float, default=1e-3)
    parser.add_argument("--attention-weight", type=non_negative_float, default=0.5, help="weight of the attention loss (0: off)")
    parser.add_argument("--eval-every", type=positive_int, default=200)
    parser.add_argument("--test-n", type=positive_int, default=500, help="synthetic test questions per resolution")
    parser.add_argument("--easy-test-n", type=non_negative_int, default=1000, help="easy-vqa test questions (0: all)")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads (1 is faster on a busy machine)")
