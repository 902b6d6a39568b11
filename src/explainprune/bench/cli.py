"""`explainprune bench`: the speed benchmark's command line."""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from ..adapters import get_adapter
from ..arguments import keep_ratio_list, scorer_list
from ..predictor import Predictor
from .architectures import ARCHITECTURES, build_model
from .inputs import synthetic_inputs
from .measure import run_benchmark
from .report import environment, text_table, write_json, write_markdown

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DEFAULT_SCORERS = ("layer0", "fastv", "learned")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--arch", choices=ARCHITECTURES, default="qwen2-vl-2b", help="architecture (random weights)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--visual-tokens", type=int, default=1000, help="about this many visual tokens (one image)")
    parser.add_argument("--text-tokens", type=int, default=32, help="non-visual prompt tokens (a one-question chat prompt)")
    parser.add_argument("--keep", default="1,0.5,0.25,0.1", help="comma-separated keep ratios")
    parser.add_argument("--scorers", default=",".join(DEFAULT_SCORERS), help="comma-separated scorer names")
    parser.add_argument(
        "--inllm-layer", "--fastv-layer", dest="inllm_layer", type=int, default=2,
        help="pruning layer K of the in-LLM pruners (fastv, dart)",
    )  # fmt: skip
    parser.add_argument(
        "--predictor", metavar="DIR", help="learned scorer's predictor (default: the shipped one for `embedded`, "
        "else an untrained predictor of the default size: its speed, not its choices, is measured)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="discarded warm-up rounds")
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--layers", type=int, default=None, help="cut the LLM to this many layers (quick runs)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--markdown", metavar="FILE", help="write a markdown table with the command")
    return parser


def untrained_predictor(model) -> Predictor:
    """A randomly initialised predictor of the default ("paper") size for `model`'s image tokens."""
    config = {
        "arch": "paper",
        "n_heads": model.config.get_text_config().num_attention_heads,
        "fingerprint": get_adapter(model).fingerprint,
        "modality": "image",
    }
    return Predictor(config).eval()


def benchmark(args: argparse.Namespace, command: str, progress=print) -> dict:
    """Build the model and inputs of `args`, run every case and return the report."""
    if args.threads:
        torch.set_num_threads(args.threads)
    scorers = scorer_list(args.scorers)
    env = environment()
    model = build_model(args.arch, DTYPES[args.dtype], args.layers)
    inputs = synthetic_inputs(model, args.visual_tokens, args.text_tokens, args.seed)
    predictor = args.predictor
    if predictor is None and {"learned", "learned-mmr"} & set(scorers) and args.arch != "embedded":
        predictor = untrained_predictor(model)
    scorer_options = {
        "fastv": {"layer": args.inllm_layer},
        "dart": {"layer": args.inllm_layer},
        "learned": {"predictor": predictor},
        "learned-mmr": {"predictor": predictor},
    }
    result = run_benchmark(
        model,
        inputs,
        scorers=scorers,
        keep_ratios=keep_ratio_list(args.keep),
        repeats=args.repeats,
        warmup=args.warmup,
        decode_tokens=args.decode_tokens,
        scorer_options=scorer_options,
        progress=progress,
    )
    env["load_average_end"] = environment()["load_average"]
    return {
        "arch": args.arch,
        "dtype": args.dtype,
        "visual_tokens": result["visual_tokens"],
        "sequence_length": result["sequence_length"],
        "layers": model.config.get_text_config().num_hidden_layers,
        "layers_cut": args.layers,
        "repeats": args.repeats,
        "decode_tokens": args.decode_tokens,
        "command": command,
        "env": env,
        "rows": result["rows"],
    }


def main(args: argparse.Namespace, command: str | None = None) -> int:
    """Run the benchmark of `args`, print the table, write --json / --markdown."""
    if command is None:  # run as `explainprune bench ...`
        command = shlex.join(["explainprune", "bench", *sys.argv[2:]])
    report = benchmark(args, command)
    print(text_table(report))
    if args.json:
        write_json(report, args.json)
    if args.markdown:
        write_markdown(report, args.markdown)
    return 0


if __name__ == "__main__":
    parsed = add_arguments(argparse.ArgumentParser(prog="python -m explainprune.bench.cli")).parse_args()
    sys.exit(main(parsed, shlex.join(["python", "-m", "explainprune.bench.cli", *sys.argv[1:]])))
