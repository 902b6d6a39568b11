"""`explainprune bench`: options."""

from __future__ import annotations

import argparse

from ..options import add_device_options, add_keep_option, add_scorers_option, non_negative_int, output_file, positive_int

HELP = "measure what compression buys in wall-clock time"
RUN = "explainprune.bench.cli:main"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--arch", default="qwen2-vl-2b", help="architecture with random weights: qwen2-vl-2b, qwen2.5-vl-3b, llava-onevision-0.5b; embedded; tiny-qwen2-vl, tiny-qwen2.5-vl, tiny-llava-onevision")
    add_device_options(parser, dtype="bf16")
    parser.add_argument("--visual-tokens", type=positive_int, default=1000, help="about this many visual tokens (one image)")
    parser.add_argument("--text-tokens", type=positive_int, default=32, help="non-visual prompt tokens (a one-question chat prompt)")
    add_keep_option(parser, "1,0.5,0.25,0.1")
    add_scorers_option(parser, "layer0,fastv,learned")
    parser.add_argument(
        "--inllm-layer", "--fastv-layer", dest="inllm_layer", type=non_negative_int, default=2,
        help="pruning layer K of the in-LLM pruners (fastv, dart)",
    )  # fmt: skip
    parser.add_argument(
        "--predictor", metavar="DIR", help="learned scorer's predictor (default: the shipped one for `embedded`, "
        "else an untrained predictor of the default size: its speed, not its choices, is measured)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--warmup", type=non_negative_int, default=1, help="discarded warm-up rounds")
    parser.add_argument("--decode-tokens", type=positive_int, default=32)
    parser.add_argument("--layers", type=positive_int, default=None, help="cut the LLM to this many layers (quick runs)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--json", type=output_file, metavar="FILE", help="write the report as JSON")
    parser.add_argument("--markdown", type=output_file, metavar="FILE", help="write a markdown table with the command")
    return parser
