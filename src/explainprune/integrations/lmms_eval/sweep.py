"""`explainprune lmms-eval`: every (scorer, keep ratio) on lmms-eval tasks in one process.

The model is loaded once and the tasks are indexed once; each run evaluates a fresh `explainprune`
model wrapper around the loaded model (lmms-eval's `clean()` strips a wrapper after its run). The
keep-1.0 run is the baseline of every scorer, as in `explainprune eval`; retention and its paired
bootstrap interval come from per-document scores. A run that fails is reported and the command
exits 1 (lmms-eval's own command line exits 0 when an evaluation fails).
"""

from __future__ import annotations

import argparse
import json
import numbers
import traceback

from ...arguments import check_scorers
from ...bench.quality import format_table, retention_report
from ...errors import ExplainPruneError
from ...loading import load_model
from ...scoring import scorer_options

BASELINE = ("baseline", 1.0)


def run_name(scorer: str, keep: float) -> str:
    return f"{scorer}_keep{keep:g}"


def document_score(value) -> float | None:
    """A per-document metric value as a number: numbers, or the 'score' of a dict (e.g. MMStar's)."""
    if isinstance(value, dict):
        value = value.get("score")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def first_response(sample: dict):
    """The (filtered) model response of a logged sample: a list of one per request, or saved flat."""
    response = sample.get("filtered_resps")
    return response[0] if isinstance(response, list) and response else response


def task_scores(results: dict, task: str, metric: str | None = None) -> dict:
    """{"metric", "value", "documents": {doc_id: {"score", "response"}}} of one task's logged samples.

    The metric is `metric`, else the first of the task's metric list that every document scores.
    """
    samples = results.get("samples", {}).get(task) or []
    if not samples:
        raise ExplainPruneError(f"task {task!r}: lmms-eval returned no documents")
    names = [entry["metric"] for entry in results["configs"][task].get("metric_list", [])]
    candidates = [metric] if metric else names
    for name in candidates:
        scores = [document_score(sample.get(name)) for sample in samples]
        if all(score is not None for score in scores):
            break
    else:
        raise ExplainPruneError(
            f"task {task!r}: no per-document numeric score for {metric or 'any of ' + ', '.join(names)}; pass --metric"
        )
    value = next((v for k, v in results["results"][task].items() if k.split(",")[0] == name), None)
    documents = {
        str(sample["doc_id"]): {"score": score, "response": first_response(sample)}
        for sample, score in zip(samples, scores)
    }
    return {"metric": name, "value": value, "documents": documents}


def main(args: argparse.Namespace) -> int:
    scorers = check_scorers(args.scorers)
    try:
        from lmms_eval.evaluator import simple_evaluate
        from lmms_eval.tasks import TaskManager
    except ImportError as error:
        raise ExplainPruneError(
            f"lmms-eval is not installed ({error}): pip install 'explainprune[lmms]' && pip install --no-deps lmms-eval==0.7.3"
        ) from None
    from .model import ExplainPruneChat, ExplainPruneSimple

    if args.include_path is not None and not args.include_path.is_dir():
        raise ExplainPruneError(f"--include-path {args.include_path}: not a folder")
    task_manager = TaskManager(include_path=str(args.include_path) if args.include_path else None)
    unknown = [task for task in args.tasks if task not in task_manager.all_tasks]
    if unknown:
        raise ExplainPruneError(f"unknown lmms-eval task(s) {', '.join(unknown)}; pass --include-path for local task folders")
    model, processor = load_model(args.model, args.device, args.dtype, args.attn_implementation)
    wrapper_class = ExplainPruneSimple if args.force_simple else ExplainPruneChat
    runs = [BASELINE] + [(scorer, keep) for scorer in scorers for keep in args.keep if keep < 1.0]
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    outcomes, failures = {}, []
    for scorer, keep in runs:
        name = run_name(scorer, keep)
        scorer_name = "random" if (scorer, keep) == BASELINE else scorer  # keep 1.0: every scorer is the model
        options = {"predictor": args.predictor} if args.predictor and "predictor" in scorer_options(scorer_name) else {}
        try:
            wrapper = wrapper_class.around(
                model, processor, scorer=scorer_name, keep_ratio=keep,
                batch_size=args.batch_size, **options,
            )  # fmt: skip
            results = simple_evaluate(
                model=wrapper, tasks=args.tasks, task_manager=task_manager, limit=args.limit,
                log_samples=True, bootstrap_iters=0, batch_size=args.batch_size,
            )  # fmt: skip
            if not results:
                raise ExplainPruneError("lmms-eval returned no results")
            outcomes[(scorer, keep)] = {task: task_scores(results, task, args.metric) for task in args.tasks}
        except Exception as error:  # one failed run must not stop the others; it fails the command at the end
            (args.out / "runs" / f"{name}.error.txt").write_text(traceback.format_exc())
            failures.append(name)
            print(f"explainprune lmms-eval: error: run {name} failed: {' '.join(str(error).split()) or type(error).__name__}")
            continue
        (args.out / "runs" / f"{name}.json").write_text(json.dumps(outcomes[(scorer, keep)], indent=2, default=str))
    report = {"model": args.model, "tasks": {}, "device": str(model.device), "dtype": args.dtype, "failed_runs": failures}
    if BASELINE in outcomes:
        for task in args.tasks:
            report["tasks"][task] = task_report(outcomes, task, scorers, args.keep)
            print(f"\n{task} ({report['tasks'][task]['metric']})\n{format_table(report['tasks'][task])}")
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out / 'results.json'}")
    if failures:
        print(f"explainprune lmms-eval: error: {len(failures)} of {len(runs)} runs failed ({', '.join(failures)}); "
              f"tracebacks in {args.out / 'runs'}")  # fmt: skip
        return 1
    return 0


def task_report(outcomes: dict, task: str, scorers: list[str], keep_ratios: list[float]) -> dict:
    """Retention rows of one task over the documents every run scored."""
    documents = outcomes[BASELINE][task]["documents"]
    doc_ids = sorted(set(documents).intersection(*(o[task]["documents"] for o in outcomes.values())), key=int)
    correct = {key: [outcome[task]["documents"][d]["score"] for d in doc_ids] for key, outcome in outcomes.items()}
    done = [s for s in scorers if all((s, k) in outcomes for k in keep_ratios if k < 1.0)]
    report = retention_report(correct, done, keep_ratios)
    report["metric"] = outcomes[BASELINE][task]["metric"]
    report["lmms_eval_value"] = {run_name(*key): outcome[task]["value"] for key, outcome in outcomes.items()}
    return report
