"""`explainprune bench`: the speed benchmark's command line."""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from ..adapters import get_adapter
from ..arguments import check_scorers
from ..commands import bench as bench_options
from ..devices import resolve_device, torch_dtype
from ..predictor import Predictor
from ..scoring import scorer_options
from .architectures import build_model
from .inputs import synthetic_inputs
from .measure import run_benchmark
from .report import environment, text_table, write_json, write_markdown



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
    scorers = check_scorers(args.scorers)
    device = resolve_device(args.device)
    env = environment()
    model = build_model(args.arch, torch_dtype(args.dtype), args.layers, device, args.attn_implementation or "sdpa")
    inputs = {k: v.to(device) for k, v in synthetic_inputs(model, args.visual_tokens, args.text_tokens, args.seed).items()}
    takes_predictor = [name for name in scorers if "predictor" in scorer_options(name)]
    predictor = args.predictor
    if predictor is None and takes_predictor and args.arch != "embedded":
        predictor = untrained_predictor(model).to(device)
    options = {"fastv": {"layer": args.inllm_layer}, "dart": {"layer": args.inllm_layer}}
    options |= {name: {"predictor": predictor} for name in takes_predictor}
    result = run_benchmark(
        model,
        inputs,
        scorers=scorers,
        keep_ratios=args.keep,
        repeats=args.repeats,
        warmup=args.warmup,
        decode_tokens=args.decode_tokens,
        scorer_options=options,
        progress=progress,
    )
    env["load_average_end"] = environment()["load_average"]
    return {
        "arch": args.arch,
        "dtype": args.dtype,
        "device": str(device),
        "attn_implementation": model.config.get_text_config()._attn_implementation,
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
    parsed = bench_options.add_arguments(argparse.ArgumentParser(prog="python -m explainprune.bench.cli")).parse_args()
    sys.exit(main(parsed, shlex.join(["python", "-m", "explainprune.bench.cli", *sys.argv[1:]])))
