"""Quality harness: accuracy and retention of every scorer and keep ratio on a VQA data set.

Retention = accuracy / accuracy at keep 1.0 x 100, with a paired bootstrap 95% interval over questions.
With reference scorers, each row also gets the difference of its retention to each reference's at the
same keep ratio, with a paired bootstrap 95% interval (the same questions resampled for both).
Each batch is encoded once (vision tower included); each scorer scores it once; every keep ratio
then reuses those scores. Oracles that need labels (`mask-oracle`) are built per batch from its samples.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..compressor import Compressor, prune_stats
from ..data import is_correct, make_inputs
from ..data.sample import Sample
from ..errors import ExplainPruneError
from ..prune import check_keep_ratio
from ..scoring import scorer_class

MAX_NEW_TOKENS = 6


def _decode(processor, new_tokens: torch.Tensor) -> list[str]:
    return processor.batch_decode(new_tokens, skip_special_tokens=True)


def _answers(compressor: Compressor, inputs, encoded, scores) -> tuple[list[str], list[int]]:
    """Greedy answers and visual tokens kept per sample, for one scorer at one keep ratio."""
    generate_kwargs = {"max_new_tokens": MAX_NEW_TOKENS, "do_sample": False}
    if compressor.input_stage:
        prepared = compressor.prepare_encoded(encoded, scores)
        new_tokens = compressor.model.generate(**prepared, **generate_kwargs)
        return _decode(compressor.processor, new_tokens), prepared.stats.visual_after
    new_tokens, kept = compressor.scorer.generate(compressor.adapter, encoded, compressor.keep_ratio, **generate_kwargs)
    return _decode(compressor.processor, new_tokens), prune_stats(encoded, kept).visual_after


def bootstrap_retention(correct: np.ndarray, baseline: np.ndarray, rounds: int = 2000, seed: int = 0):
    """95% interval of 100 * mean(correct) / mean(baseline) over questions resampled together
    ([None, None] when the baseline answers nothing right: retention is undefined)."""
    if not baseline.any():
        return [None, None]
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(correct), size=(rounds, len(correct)))
    base = baseline[index].mean(1)
    ratio = 100.0 * correct[index].mean(1) / np.where(base > 0, base, np.nan)
    low, high = np.nanpercentile(ratio, [2.5, 97.5])
    return [round(float(low), 2), round(float(high), 2)]


def check_evaluation(samples: list[Sample], scorers: list[str], keep_ratios: list[float], batch_size: int) -> None:
    """Refuse what would make a table of NaN or of duplicate rows: no samples, samples without an
    answer, no or repeated scorers or keep ratios, a batch size below 1."""
    if not samples:
        raise ExplainPruneError("no samples to evaluate: the data spec or file selected none")
    unanswered = [s.id for s in samples if not s.answer]
    if unanswered:
        raise ExplainPruneError(
            f"{len(unanswered)} sample(s) have no answer to score against (e.g. {unanswered[0]!r}): give each an answer"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ExplainPruneError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    for what, values in (("scorers", list(scorers)), ("keep ratios", [check_keep_ratio(k) for k in keep_ratios])):
        if not values or len(set(values)) != len(values):
            raise ExplainPruneError(f"{what} must be a non-empty list without repeats, got {values}")


def bootstrap_difference(correct: np.ndarray, reference: np.ndarray, baseline: np.ndarray, rounds: int = 2000, seed: int = 0):
    """95% interval of the retention difference 100 * (mean(correct) - mean(reference)) / mean(baseline),
    the three resampled on the same questions ([None, None] when the baseline answers nothing right)."""
    if not baseline.any():
        return [None, None]
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(correct), size=(rounds, len(correct)))
    base = baseline[index].mean(1)
    difference = 100.0 * (correct[index].mean(1) - reference[index].mean(1)) / np.where(base > 0, base, np.nan)
    low, high = np.nanpercentile(difference, [2.5, 97.5])
    return [round(float(low), 2), round(float(high), 2)]


def evaluate(
    model,
    processor,
    samples: list[Sample],
    scorers: list[str],
    keep_ratios: list[float],
    scorer_options: dict[str, dict] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    keep_answers: bool = False,
    references: list[str] = (),
    by_type: bool = False,
) -> dict:
    """Accuracy, retention (with bootstrap interval) and mean visual tokens kept, per scorer and keep;
    with `keep_answers`, also every answer ("answers": one record per question, scorer and keep); with
    `references` (some of `scorers`), each row's retention difference to each with a paired interval;
    with `by_type`, the same rows per question type ("by_type", see `retention_by_type`)."""
    check_evaluation(samples, scorers, keep_ratios, batch_size)
    if by_type:
        check_question_types(samples)
    scorer_options = scorer_options or {}
    for reference in references:
        if reference not in scorers:
            raise ExplainPruneError(f"reference scorer {reference!r} must be one of the evaluated scorers: {', '.join(scorers)}")
    oracles = [name for name in scorers if getattr(scorer_class(name), "needs_labels", False)]
    pruned_keeps = [k for k in keep_ratios if k < 1.0]
    compressors = {
        (name, keep): Compressor(model, processor, scorer=name, keep_ratio=keep, **scorer_options.get(name, {}))
        for name in scorers
        for keep in pruned_keeps
    }
    baseline_compressor = Compressor(model, processor, scorer="random", keep_ratio=1.0)
    capture_vision = any(getattr(c.scorer, "needs_vision_capture", False) for c in compressors.values())
    predictions: dict = {key: [] for key in [("baseline", 1.0), *compressors]}
    tokens: dict = {key: [] for key in predictions}
    with tqdm(total=len(samples), desc="eval", unit="q", disable=not progress) as bar:  # closed on errors too
        for start in range(0, len(samples), batch_size):
            batch = samples[start : start + batch_size]
            inputs = make_inputs(processor, batch, device=model.device)
            encoded = baseline_compressor.encode(capture_vision=capture_vision, **inputs)
            for name in oracles:
                for keep in pruned_keeps:
                    compressors[(name, keep)].scorer = scorer_class(name).for_samples(batch)
            runs = [(("baseline", 1.0), baseline_compressor, None)]
            for name in scorers:
                first = compressors.get((name, pruned_keeps[0])) if pruned_keeps else None
                reuse = first is not None and first.input_stage and first.scorer.ranks_by_scores
                scores = first.score(encoded) if reuse else None
                runs += [((name, keep), compressors[(name, keep)], scores) for keep in pruned_keeps]
            for key, compressor, scores in runs:
                answers, kept = _answers(compressor, inputs, encoded, scores)
                predictions[key] += answers
                tokens[key] += kept
            bar.update(len(batch))
    correct = {key: [is_correct(a, s.answer) for a, s in zip(answers, samples)] for key, answers in predictions.items()}
    report = retention_report(correct, scorers, keep_ratios, tokens, references, oracles)
    if by_type:
        report["by_type"] = retention_by_type(correct, [sample.qtype for sample in samples], scorers, keep_ratios, oracles)
    if keep_answers:
        report["answers"] = [
            {"id": sample.id, "scorer": name, "keep_ratio": keep, "prediction": answer, "correct": hit}
            for (name, keep), answers in predictions.items()
            for sample, answer, hit in zip(samples, answers, correct[(name, keep)])
        ]
    return report


def retention_report(
    correct: dict,
    scorers: list[str],
    keep_ratios: list[float],
    tokens: dict | None = None,
    references: list[str] = (),
    oracles: list[str] = (),
) -> dict:
    """Rows of accuracy, retention and its bootstrap interval per scorer and keep ratio, from per-question
    scores: `correct` maps ("baseline", 1.0) and each (scorer, keep < 1) to one score in [0, 1] per
    question (the same questions in the same order); `tokens` likewise to visual tokens kept. With
    `references`, each row's retention difference to each at the same keep (`vs`: reference ->
    {"difference", "ci"}, a paired bootstrap interval); `oracles` are marked as such."""
    baseline = np.array(correct[("baseline", 1.0)], dtype=float)
    baseline_accuracy = float(baseline.mean())
    rows = []
    for name in scorers:
        for keep in sorted(keep_ratios, reverse=True):
            key = ("baseline", 1.0) if keep >= 1.0 else (name, keep)
            hits = np.array(correct[key], dtype=float)
            accuracy = float(hits.mean())
            row = {
                "scorer": name,
                "keep_ratio": keep,
                "accuracy": round(accuracy, 4),
                "retention": round(100.0 * accuracy / baseline_accuracy, 2) if baseline_accuracy else None,
                "retention_ci": bootstrap_retention(hits, baseline),
            }
            if tokens is not None:
                row["visual_tokens"] = round(float(np.mean(tokens[key])), 1)
            row["oracle"] = name in oracles
            if references:
                row["vs"] = {}
            for reference in references:
                reference_hits = np.array(correct[("baseline", 1.0) if keep >= 1.0 else (reference, keep)], dtype=float)
                difference = 100.0 * (accuracy - float(reference_hits.mean())) / baseline_accuracy if baseline_accuracy else None
                row["vs"][reference] = {
                    "difference": round(difference, 2) if difference is not None else None,
                    "ci": bootstrap_difference(hits, reference_hits, baseline),
                }
            rows.append(row)
    report = {"n": len(baseline), "baseline_accuracy": round(baseline_accuracy, 4), "rows": rows}
    return report | ({"references": list(references)} if references else {})


def check_question_types(samples: list[Sample]) -> None:
    """Refuse a per-type breakdown of data whose samples do not all name their question type."""
    untyped = [sample.id for sample in samples if not sample.qtype]
    if untyped:
        raise ExplainPruneError(
            f"{len(untyped)} of {len(samples)} samples have no question type (first: {untyped[0]!r}); "
            "--by-type needs typed data (synthetic, synthetic-video, easy-vqa, or JSON lines with \"qtype\")"
        )


def retention_by_type(correct: dict, qtypes: list[str], scorers: list[str], keep_ratios: list[float], oracles=()) -> dict:
    """`retention_report` of each question type's questions alone (types in first-seen order): retention
    against the unpruned model's accuracy on that type, with its bootstrap interval."""
    by_type = {}
    for qtype in dict.fromkeys(qtypes):
        index = [i for i, t in enumerate(qtypes) if t == qtype]
        subset = {key: [values[i] for i in index] for key, values in correct.items()}
        by_type[qtype] = retention_report(subset, scorers, keep_ratios, oracles=oracles)
    return by_type


def type_table(report: dict, markdown: bool = False) -> str:
    """Retention per scorer (rows) and question type (columns) of a report with "by_type", one table per
    keep ratio < 1, then each type's question count and the unpruned model's accuracy on it."""
    by_type = report["by_type"]
    keeps = sorted({row["keep_ratio"] for row in report["rows"] if row["keep_ratio"] < 1}, reverse=True)
    retention = {
        (qtype, row["scorer"], row["keep_ratio"]): "n/a" if row["retention"] is None else f"{row['retention']:.1f}"
        for qtype, sub in by_type.items()
        for row in sub["rows"]
    }
    scorers = list(dict.fromkeys(row["scorer"] for row in report["rows"]))
    header = ["scorer", *by_type]
    blocks = []
    for keep in keeps:
        body = [[name, *(retention[(qtype, name, keep)] for qtype in by_type)] for name in scorers]
        if markdown:
            lines = [f"Retention (%) per question type at keep {keep:g}:", ""]
            lines += ["| " + " | ".join(header) + " |", "|---" + "|---:" * len(by_type) + "|"]
            lines += ["| " + " | ".join([f"`{line[0]}`", *line[1:]]) + " |" for line in body]
        else:
            widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
            lines = [f"retention (%) per question type at keep {keep:g}"]
            lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in [header, *body]]
        blocks.append("\n".join(lines))
    note = "Unpruned accuracy per type: " + ", ".join(f"{qtype} {sub['baseline_accuracy']:.3f} (n={sub['n']})" for qtype, sub in by_type.items())
    return "\n\n".join([*blocks, note]) + "\n"


def format_table(report: dict) -> str:
    """A fixed-width table of an evaluate() report."""
    references = report.get("references", [])
    width = max(10, *(len(row["scorer"]) + 2 * row.get("oracle", False) for row in report["rows"]))
    with_tokens = all("visual_tokens" in row for row in report["rows"])
    header = f"{'scorer':<{width}} {'keep':>5} {'accuracy':>8} {'retention':>9} {'95% CI':>16}"
    header += f" {'tokens':>7}" if with_tokens else ""
    header += "".join(f" {'vs ' + reference:>15} {'paired 95% CI':>16}" for reference in references)
    lines = [f"n={report['n']}  baseline accuracy={report['baseline_accuracy']:.3f}", header]
    for row in report["rows"]:
        retention = f"{row['retention']:.1f}" if row["retention"] is not None else "n/a"
        name = f"{row['scorer']} *" if row.get("oracle") else row["scorer"]
        line = (
            f"{name:<{width}} {row['keep_ratio']:>5.2f} {row['accuracy']:>8.3f} {retention:>9} "
            f"{_interval(row['retention_ci']):>16}"
        )
        line += f" {row['visual_tokens']:>7.1f}" if with_tokens else ""
        for reference in references:
            versus = row["vs"][reference]
            difference = f"{versus['difference']:+.1f}" if versus["difference"] is not None else "n/a"
            line += f" {difference:>15} {_interval(versus['ci'], signed=True):>16}"
        lines.append(line)
    if any(row.get("oracle") for row in report["rows"]):
        lines.append("* oracle: uses the labels (where the question's objects are), an upper bound, not a method")
    return "\n".join(lines)


def markdown_table(report: dict) -> str:
    """The pruned rows of an evaluate() report as a Markdown table: retention [95% CI] per keep ratio, then
    per reference and keep ratio the paired difference [95% CI], bold where the interval excludes 0."""
    references = report.get("references", [])
    keeps = sorted({row["keep_ratio"] for row in report["rows"] if row["keep_ratio"] < 1}, reverse=True)
    header = ["scorer", *(f"keep {keep:g}" for keep in keeps)]
    header += [f"vs {reference} @ {keep:g}" for reference in references for keep in keeps]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for scorer in dict.fromkeys(row["scorer"] for row in report["rows"]):
        rows = {row["keep_ratio"]: row for row in report["rows"] if row["scorer"] == scorer}
        name = f"`{scorer}` (oracle)" if rows[keeps[0]].get("oracle") else f"`{scorer}`"
        cells = [name]
        for keep in keeps:
            retention = rows[keep]["retention"]
            cells.append("n/a" if retention is None else f"{retention:.1f} {_interval(rows[keep]['retention_ci'])}")
        for reference in references:
            for keep in keeps:
                versus = rows[keep]["vs"][reference]
                low, high = versus["ci"]
                if scorer == reference or versus["difference"] is None:
                    cells.append("–")
                    continue
                text = f"{versus['difference']:+.1f} {_interval(versus['ci'], signed=True)}"
                cells.append(f"**{text}**" if low is not None and (low > 0 or high < 0) else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def check_plot_path(path) -> None:
    """Refuse, before any work, a plot file whose extension matplotlib cannot write."""
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise ExplainPruneError(f"--plot {path}: name a file ending in one of .{', .'.join(sorted(formats))} (e.g. .png)")


def _interval(interval, signed: bool = False) -> str:
    low, high = interval
    if low is None:
        return "n/a"
    return ("[{:+.1f}, {:+.1f}]" if signed else "[{:.1f}, {:.1f}]").format(low, high)


def plot_retention(report: dict, path) -> None:
    """Retention against keep ratio, one line per scorer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(row["scorer"] for row in report["rows"]))
    figure, axis = plt.subplots(figsize=(6 + 1.5 * (len(names) > 6), 4))
    colours = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    for index, name in enumerate(names):
        rows = sorted((r for r in report["rows"] if r["scorer"] == name), key=lambda r: r["keep_ratio"])
        oracle = rows[0].get("oracle", False)
        axis.plot(
            [r["keep_ratio"] for r in rows],
            [r["retention"] for r in rows],
            marker="o",
            color=colours(index),
            linestyle="--" if oracle else "-",
            label=f"{name} (oracle)" if oracle else name,
        )
    axis.set_xlabel("keep ratio (share of visual tokens kept)")
    axis.set_ylabel("retention (% of unpruned accuracy)")
    axis.set_title(f"{report.get('model', '')} on {report.get('data', '')}\n(n={report['n']})", fontsize=9)
    axis.grid(alpha=0.3)
    if len(names) > 6:
        axis.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    else:
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
