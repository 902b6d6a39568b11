"""`explainprune eval`: retention of every scorer and keep ratio on a data set, as a table and JSON."""

from __future__ import annotations

import argparse
import json

from .arguments import check_scorers
from .bench.quality import (
    check_evaluation, check_plot_path, check_question_types, evaluate, format_table, markdown_table, plot_retention, type_table,
)
from .errors import ExplainPruneError
from .options import group_scorer_options
from .scoring import make_scorer, scorer_options
from .data import load_samples
from .devices import resolve_device
from .loading import load_model, model_directory


def main(args: argparse.Namespace) -> int:
    # cheap checks first: a mistake is refused before samples are made or the model loads
    check_scorers(args.scorers)
    for reference in args.reference:
        if reference not in args.scorers:
            raise ExplainPruneError(f"--reference {reference!r} must be one of --scorers ({', '.join(args.scorers)})")
    try:
        options = group_scorer_options(args.option, args.scorers)
    except argparse.ArgumentTypeError as error:
        raise ExplainPruneError(str(error)) from None
    if args.predictor:  # for every scorer that takes a predictor (learned, learned-mmr, learned-coverage)
        for name in args.scorers:
            if "predictor" in scorer_options(name):
                options.setdefault(name, {})["predictor"] = args.predictor
    for name in args.scorers:  # bad options fail before the model loads
        make_scorer(name, **options.get(name, {}))
    model_directory(args.model)
    resolve_device(args.device)
    if args.plot:
        check_plot_path(args.plot)
    samples = load_samples(args.data)
    check_evaluation(samples, args.scorers, args.keep, args.batch_size)
    if args.by_type:
        check_question_types(samples)
    model, processor = load_model(args.model, args.device, args.dtype, args.attn_implementation)
    report = {"model": args.model, "data": args.data, "device": str(model.device), "dtype": args.dtype}
    report["options"] = {name: {key: str(value) for key, value in given.items()} for name, given in options.items()}
    report |= evaluate(
        model, processor, samples, args.scorers, args.keep, options, args.batch_size,
        keep_answers=bool(args.answers), references=args.reference, by_type=args.by_type,
    )  # fmt: skip
    answers = report.pop("answers", None)
    print(format_table(report))
    if args.by_type:
        print(type_table(report))
    if args.answers:
        args.answers.parent.mkdir(parents=True, exist_ok=True)
        args.answers.write_text("".join(json.dumps(record) + "\n" for record in answers))
        print(f"wrote {args.answers}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_retention(report, args.plot)
        print(f"wrote {args.plot}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_table(report) + ("\n" + type_table(report, markdown=True) if args.by_type else ""))
        print(f"wrote {args.markdown}")
    return 0
