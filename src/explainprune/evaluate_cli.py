"""`explainprune eval`: retention of every scorer and keep ratio on a data set, as a table and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .arguments import keep_ratio_list, scorer_list, scorer_options
from .errors import ExplainPruneError
from .scoring import make_scorer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="embedded", help="'embedded' or a save_pretrained directory")
    parser.add_argument("--data", default="synthetic:split=test,seed=0,n=500,size=224", help="data spec")
    parser.add_argument("--keep", default="1,0.5,0.25,0.1", help="comma-separated keep ratios")
    parser.add_argument("--scorers", default="learned,layer0,uniform,random", help="comma-separated scorer names")
    parser.add_argument(
        "--predictor", help="predictor directory for the learned scorers (learned, learned-mmr; default: the model's shipped one)"
    )
    parser.add_argument(
        "--reference", metavar="SCORER", help="also report each row's retention difference to this scorer, with a paired 95%% interval"
    )
    parser.add_argument(
        "--option", action="append", default=[], metavar="SCORER.KEY=VALUE",
        help="a scorer option, e.g. learned-mmr.mmr_lambda=0.5 or dart.layer=3 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--plot", type=Path, help="write a retention-vs-keep plot (PNG) here")


def main(args: argparse.Namespace) -> int:
    from .bench.quality import evaluate, format_table, plot_retention
    from .data import load_samples
    from .loading import load_model, parse_dtype

    keep_ratios = keep_ratio_list(args.keep)
    scorers = scorer_list(args.scorers)  # fails fast on a misspelt name, before loading anything
    if args.reference is not None and args.reference not in scorers:
        raise ExplainPruneError(f"--reference {args.reference!r} must be one of --scorers ({', '.join(scorers)})")
    options = scorer_options(args.option, scorers)
    if args.predictor:
        for name in ("learned", "learned-mmr"):
            options.setdefault(name, {})["predictor"] = args.predictor
    for name in scorers:  # bad options fail before the model loads
        make_scorer(name, **options.get(name, {}))
    model, processor = load_model(args.model, parse_dtype(args.dtype))
    samples = load_samples(args.data)
    report = {"model": args.model, "data": args.data, "options": {k: {o: str(v) for o, v in d.items()} for k, d in options.items()}}
    report |= evaluate(
        model, processor, samples, scorers, keep_ratios, options, batch_size=args.batch_size, reference=args.reference
    )
    print(format_table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_retention(report, args.plot)
        print(f"wrote {args.plot}")
    return 0
