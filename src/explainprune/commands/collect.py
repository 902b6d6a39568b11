"""`explainprune collect`: options."""

from __future__ import annotations

import argparse

from ..options import add_device_options, positive_int

HELP = "collect (layer-0 attention, relevance) training pairs"
RUN = "explainprune.collect:main"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="save_pretrained directory, or 'embedded'")
    parser.add_argument("--data", required=True, help="data spec, e.g. synthetic:split=train,n=500 or a .jsonl file")
    parser.add_argument("--out", required=True, help="output directory (resumed if it exists)")
    parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N samples")
    parser.add_argument("--explainer", default="gae", help="explainer of the targets (default: gae; also rollout, gradxinput)")
    variant = parser.add_argument_group("GAE variant (explain/gae.py; gae explainer only)")
    variant.add_argument("--variant", help="preset the options below start from: default (the best measured) or paper")
    variant.add_argument("--quantity", help="explained quantity of each answer token: logit, logprob or margin")
    variant.add_argument("--gradient", help="probs: dS/dA as the paper; centred: w.r.t. the pre-softmax scores")
    variant.add_argument("--heads", help="aggregation of relu(weighted attention) over heads: mean, sum or max")
    variant.add_argument("--answer-tokens", help="which answer tokens are explained: all, first or no-eos")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--max-new-tokens", type=positive_int, default=8, help="answer length limit")
    parser.add_argument("--keep-incorrect", action="store_true", help="also keep wrongly answered samples")
    parser.add_argument("--shard-size", type=positive_int, default=256, help="records per shard file")
    add_device_options(parser)
