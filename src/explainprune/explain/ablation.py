"""Which GAE variant points at what matters: retention and where the relevance lands.

    python -m explainprune.explain.ablation --model embedded --n 300 --out docs/eval/gae-ablation.md \
        --state gae-ablation-state.json

For each data set (default: held-out scenes at 224 px, easy-vqa, held-out scenes at 448 px) and each
row (the GAE variants of `GAE_ROWS`, gradient x input, and the layer0, uniform and random scorers):
- retention at each keep ratio: accuracy of the pruned model / accuracy of the unpruned model on the
  same questions, x 100 (selection exactly as `Compressor(scorer=...)` makes it, answers as
  `explainprune eval` decodes them; the GAE rows share one generated answer and, per explained
  quantity and answer tokens, one forward and backward: `gae_variants`, the same maps as the `gae`
  scorer with each variant);
- on synthetic scenes, where the generator has object masks: the share of the relevance on the
  tokens covering the objects the question is about (a token covers an object when the object fills
  >= 15% of its 28 x 28 cell, as in the embedded model's training), and the recall of those tokens
  in the top 25% of the scores, per question type (questions about no object, e.g. a zero count,
  are left out of both).
With `--state` every batch's outcomes are checkpointed; the same command rerun resumes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..adapters import get_adapter
from ..options import keep_ratios, positive_int
from ..bench.quality import MAX_NEW_TOKENS, bootstrap_retention
from ..compressor import Compressor
from ..data import is_correct, load_samples, make_inputs
from ..data.sample import Sample
from ..embedded.auxiliary import cell_targets
from ..embedded.conversations import relevant_objects
from ..errors import ExplainPruneError
from ..loading import load_model
from ..predictor.atomic import atomic_write_json
from ..scoring import Scorer, make_scorer
from ..scoring.gae import GAEScorer
from .answers import generate_answers
from .gae import PRESETS, GAEVariant, gae_variants
from .gradxinput import gradxinput

DATA = (  # the 448 px scenes, by far the slowest, last
    "synthetic:split=test,seed=0,n={n},size=224",
    "easy-vqa:test,n={n}",
    "synthetic:split=test,seed=0,n={n},size=448",
)
# GAE rows: presets by name or any variant as quantity/gradient/heads/answer_tokens. By default one
# factor at a time around logprob/centred/mean/no-eos, plus the paper's recipe and the former default.
GAE_ROWS = (
    "paper",
    "logit/probs/mean/no-eos",
    "logprob/probs/mean/no-eos",
    "margin/probs/mean/no-eos",
    "logit/centred/mean/no-eos",
    "logprob/centred/mean/no-eos",
    "margin/centred/mean/no-eos",
    "logprob/centred/sum/no-eos",
    "logprob/centred/max/no-eos",
    "logprob/centred/mean/all",
    "margin/centred/mean/all",
)
NOTES = {"logit/probs/mean/no-eos": "the project's former default"}
REFERENCES = ("gradxinput", "layer0", "uniform", "random")
TOP_FRACTION = 0.25


class GradXInputScorer(Scorer):
    """Gradient x input of the model's own answer (explain/gradxinput.py), as a scorer."""

    name = "gradxinput"

    def score(self, adapter, encoded):
        return gradxinput(adapter, encoded, generate_answers(adapter.model, encoded, GAEScorer().max_new_tokens))


def row_variant(row: str) -> GAEVariant | None:
    """The GAE variant of a row (a preset name or quantity/gradient/heads/answer_tokens), else None."""
    if row in PRESETS:
        return PRESETS[row]
    if row.count("/") == 3:
        return GAEVariant(*row.split("/"))
    return None


def row_scorer(row: str) -> Scorer:
    """The scorer of an ablation row: a GAE variant or a reference."""
    variant = row_variant(row)
    if variant is not None:
        return GAEScorer(**variant.as_dict())
    if row == "gradxinput":
        return GradXInputScorer()
    return make_scorer(row)


def object_cells(sample: Sample) -> torch.Tensor | None:
    """Bool per visual token (raster order of 28 x 28 cells): covers an object the question is about;
    None without masks or relevant objects."""
    if sample.mask is None or not sample.objects or not sample.qtype:
        return None
    relevant = relevant_objects(sample.qtype, sample.question, sample.objects)
    if not relevant:
        return None
    covering = cell_targets(sample.objects, sample.mask)["object"]
    return torch.isin(covering, torch.tensor(relevant))


def location(scores: torch.Tensor, cells: torch.Tensor) -> tuple[float, float]:
    """(share of the scores on the object cells, recall of the object cells in the top 25%)."""
    scores = scores.float().cpu()
    total = float(scores.sum())
    share = float(scores[cells].sum()) / total if total > 0 else float("nan")
    k = max(1, round(TOP_FRACTION * scores.numel()))
    top = torch.zeros_like(cells)
    top[torch.topk(scores, k).indices] = True
    return share, float((top & cells).sum()) / float(cells.sum())


@dataclass
class DataResult:
    """One data set's per-question outcomes, keyed by sample id (the run's checkpoint unit)."""

    data: str
    samples: dict = field(default_factory=dict)  # id -> {"qtype", "baseline", "correct", "places", "object_share"}

    def rows(self) -> list[dict]:
        return list(self.samples.values())


def run_data(
    model, processor, result: DataResult, labels: list[str], keeps: list[float], batch_size: int, checkpoint=None
) -> DataResult:
    """Retention and relevance location of every row on one data set; batches whose questions are all
    in `result` are skipped, and `checkpoint()` is called after each batch."""
    samples = load_samples(result.data)
    compressors = {label: Compressor(model, processor, scorer=row_scorer(label)) for label in labels}
    gae_rows = [label for label in labels if row_variant(label) is not None]
    adapter = get_adapter(model)
    generate = {"max_new_tokens": MAX_NEW_TOKENS, "do_sample": False}
    for start in tqdm(range(0, len(samples), batch_size), desc=result.data, unit="batch"):
        batch = samples[start : start + batch_size]
        if all(sample.id in result.samples for sample in batch):
            continue
        if "random" in compressors:  # seeded per batch: a resumed run draws what an uninterrupted one does
            compressors["random"].scorer = make_scorer("random", seed=start)
        with torch.no_grad():
            encoded = adapter.encode(dict(make_inputs(processor, batch)))
            full = model.generate(
                inputs_embeds=encoded.inputs_embeds, attention_mask=encoded.attention_mask,
                position_ids=encoded.position_ids, **generate,
            )  # fmt: skip
        cells = [object_cells(sample) for sample in batch]
        records = [
            {
                "qtype": sample.qtype,
                "baseline": hit,
                "correct": {label: {} for label in labels},
                "places": {},
                "object_share": None if c is None else float(c.float().mean()),
            }
            for sample, hit, c in zip(batch, judge(processor, full, batch), cells)
        ]
        answers = generate_answers(model, encoded, GAEScorer().max_new_tokens, keep_stop=True)
        explained = gae_variants(adapter, encoded, answers, [row_variant(label) for label in gae_rows])
        for label, compressor in compressors.items():
            scores = explained[gae_rows.index(label)] if label in gae_rows else compressor.score(encoded)
            for record, sample_cells, sample_scores in zip(records, cells, scores):
                if sample_cells is not None and label != "uniform" and sample_cells.numel() == sample_scores[0].numel():
                    record["places"][label] = location(sample_scores[0], sample_cells)
            for keep in keeps:
                compressor.keep_ratio = keep
                with torch.no_grad():
                    new_tokens = model.generate(**compressor.prepare_encoded(encoded, scores), **generate)
                for record, hit in zip(records, judge(processor, new_tokens, batch)):
                    record["correct"][label][str(keep)] = hit
        result.samples.update((sample.id, record) for sample, record in zip(batch, records))
        if checkpoint is not None:
            checkpoint()
    return result


def judge(processor, new_tokens: torch.Tensor, batch: list[Sample]) -> list[bool]:
    answers = processor.batch_decode(new_tokens, skip_special_tokens=True)
    return [is_correct(answer, sample.answer) for answer, sample in zip(answers, batch)]


def hits(result: DataResult, label: str | None, keep: float | None = None) -> np.ndarray:
    """Per question: correct at keep 1.0 (label None) or for a row at a keep ratio."""
    rows = result.rows()
    values = [r["baseline"] if label is None else r["correct"][label][str(keep)] for r in rows]
    return np.array(values, dtype=float)


def retention_table(results: list[DataResult], labels: list[str], keeps: list[float]) -> list[str]:
    head = ["row"] + [f"{short_name(r.data)} @{keep:g}" for r in results for keep in keeps]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for label in labels:
        cells = [describe(label)]
        for result in results:
            baseline = hits(result, None).mean()
            for keep in keeps:
                cells.append(f"{100 * hits(result, label, keep).mean() / baseline:.1f}" if baseline else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def default_interval_note(results: list[DataResult], labels: list[str], keeps: list[float]) -> list[str]:
    """Bootstrap 95% intervals of the default variant's retention, as a guide to the noise."""
    label = next((row for row in labels if row_variant(row) == PRESETS["default"]), None)
    notes = []
    for result in results if label is not None else []:
        spans = [
            f"{keep:g}: [{low:.1f}, {high:.1f}]"
            for keep in keeps
            for low, high in [bootstrap_retention(hits(result, label, keep), hits(result, None))]
            if low is not None
        ]
        notes.append(f"- {short_name(result.data)}, {describe(label)}: " + ", ".join(spans))
    return notes


def location_table(result: DataResult, labels: list[str]) -> list[str]:
    located = [r for r in result.rows() if r["object_share"] is not None]
    qtypes = sorted({r["qtype"] for r in located})
    head = ["row"] + [f"{q} share / recall" for q in qtypes] + ["all share / recall"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    chance = ["object tokens (chance)"]
    for qtype in [*qtypes, None]:
        shares = [r["object_share"] for r in located if qtype in (None, r["qtype"])]
        chance.append(f"{np.mean(shares):.2f} / {TOP_FRACTION:.2f}")
    lines.append("| " + " | ".join(chance) + " |")
    for label in labels:
        if not any(label in r["places"] for r in located):
            continue
        cells = [describe(label)]
        for qtype in [*qtypes, None]:
            values = [r["places"][label] for r in located if qtype in (None, r["qtype"]) and label in r["places"]]
            share, recall = np.nanmean(np.array(values), axis=0)
            cells.append(f"{share:.2f} / {recall:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    counts = {q: sum(r["qtype"] == q for r in located) for q in qtypes}
    lines += ["", "Questions per type: " + ", ".join(f"{q} {c}" for q, c in counts.items()) + "."]
    return lines


def describe(row: str) -> str:
    """The row's variant label with its preset name or note, e.g. 'logit/probs/mean/all (paper)'."""
    variant = row_variant(row)
    if variant is None:
        return row
    names = [name for name, preset in PRESETS.items() if preset == variant] + ([NOTES[row]] if row in NOTES else [])
    return variant.label() + (f" ({', '.join(names)})" if names else "")


def short_name(data: str) -> str:
    if data.startswith("synthetic"):
        size = dict(part.split("=") for part in data.split(":", 1)[1].split(","))["size"]
        return f"scenes {size} px"
    return data.split(":", 1)[0]


def report(results: list[DataResult], labels: list[str], keeps: list[float], command: str) -> str:
    lines = ["# GAE variants: retention and where the relevance lands", "", f"`{command}`", ""]
    lines.append(
        "Variant labels are quantity/gradient/heads/answer tokens (explain/gae.py). Retention: % of the "
        "unpruned model's accuracy on the same questions."
    )
    lines.append("")
    lines += [
        "Data (n questions, unpruned accuracy): "
        + "; ".join(f"`{r.data}` ({len(r.samples)}, {hits(r, None).mean():.3f})" for r in results),
        "",
        "## Retention",
        "",
    ]
    lines += retention_table(results, labels, keeps)
    lines += ["", "Bootstrap 95% intervals (over questions) of the default variant, a guide to the noise:", ""]
    lines += default_interval_note(results, labels, keeps)
    for result in results:
        if any(r["object_share"] is not None for r in result.rows()):
            lines += ["", f"## Where the relevance lands: {short_name(result.data)}", ""]
            lines += [
                "Share of the scores on the tokens covering the question's objects / recall of those tokens "
                f"in the top {TOP_FRACTION:.0%} of the scores, per question type.",
                "",
            ]
            lines += location_table(result, labels)
    return "\n".join(lines) + "\n"


def parse_rows(text: str | None) -> list[str]:
    """Comma-separated rows (default: `GAE_ROWS` and `REFERENCES`), each checked."""
    rows = [*GAE_ROWS, *REFERENCES] if text is None else [row.strip() for row in text.split(",") if row.strip()]
    for row in rows:
        if row_variant(row) is None and row not in REFERENCES:
            raise ExplainPruneError(
                f"unknown row {row!r}: a GAE preset ({', '.join(PRESETS)}), quantity/gradient/heads/answer_tokens "
                f"(e.g. logprob/centred/mean/no-eos) or one of {', '.join(REFERENCES)}"
            )
    return rows


def load_state(path: Path | None, identity: dict) -> dict:
    """The checkpoint of an earlier run of the same command (rows, keep ratios, model, batch size)."""
    if path is None or not path.exists():
        return {**identity, "data": {}}
    state = json.loads(path.read_text())
    differing = [key for key in identity if state.get(key) != identity[key]]
    if differing:
        raise ExplainPruneError(
            f"{path} is the checkpoint of another run ({', '.join(differing)} differ); "
            "delete it or pass another --state"
        )
    return state


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="'embedded' or a save_pretrained directory")
    parser.add_argument("--n", type=positive_int, default=300, help="questions per data set")
    parser.add_argument(
        "--data", action="append", help="data spec (repeatable); default: scenes 224 px, easy-vqa, scenes 448 px"
    )
    parser.add_argument("--keep", type=keep_ratios, default=keep_ratios("0.5,0.25,0.1"), help="comma-separated keep ratios")
    parser.add_argument(
        "--rows", help="comma-separated rows: GAE presets or quantity/gradient/heads/answer_tokens, and references "
        f"({', '.join(REFERENCES)}); default: the module's GAE_ROWS and all references"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--state", type=Path, help="checkpoint (JSON, per question) written after every batch; "
                        "rerunning the same command resumes from it")
    args = parser.parse_args(argv)
    try:
        keeps = [k for k in args.keep if k < 1.0]
        labels = parse_rows(args.rows)
        data = args.data or [spec.format(n=args.n) for spec in DATA]
        identity = {"model": args.model, "rows": labels, "keeps": keeps, "batch_size": args.batch_size}
        state = load_state(args.state, identity)
        model, processor = load_model(args.model)
        results = []
        for spec in data:
            result = DataResult(spec, state["data"].setdefault(spec, {}))
            save = (lambda: atomic_write_json(args.state, state)) if args.state else None
            results.append(run_data(model, processor, result, labels, keeps, args.batch_size, save))
    except (ExplainPruneError, FileNotFoundError) as error:
        print(f"explainprune.explain.ablation: error: {error}", file=sys.stderr)
        return 2
    command = "python -m explainprune.explain.ablation " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = report(results, labels, keeps, command.strip())
    print(text)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
