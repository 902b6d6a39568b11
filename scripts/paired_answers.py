"""Paired retention difference of one scorer between two `explainprune eval --answers` files (e.g. the
same scorer with two predictors), on the questions both answered.

    .venv/bin/python scripts/paired_answers.py NEW.jsonl OLD.jsonl --scorer learned

Per keep ratio: retention in each file (% of the unpruned model's accuracy, keep 1.0 of the same file)
and the difference NEW - OLD with a paired bootstrap 95% interval (`bench.quality.bootstrap_difference`,
2000 resamples, seed 0).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

from explainprune.bench.quality import bootstrap_difference


def read_answers(path: str, scorer: str) -> dict[float, dict[str, bool]]:
    """keep ratio -> sample id -> correct, for `scorer` (the unpruned rows, keep 1.0, of any scorer)."""
    answers: dict[float, dict[str, bool]] = defaultdict(dict)
    with open(path) as lines:
        for line in lines:
            row = json.loads(line)
            if row["scorer"] == scorer or row["keep_ratio"] == 1.0:
                answers[float(row["keep_ratio"])][row["id"]] = bool(row["correct"])
    if 1.0 not in answers:
        raise SystemExit(f"{path}: no unpruned (keep 1.0) answers; evaluate with --keep 1,...")
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new")
    parser.add_argument("old")
    parser.add_argument("--scorer", default="learned")
    args = parser.parse_args()
    new, old = read_answers(args.new, args.scorer), read_answers(args.old, args.scorer)
    ids = sorted(set(new[1.0]) & set(old[1.0]))
    baseline = np.array([new[1.0][i] for i in ids], dtype=float)
    if not np.array_equal(baseline, [old[1.0][i] for i in ids]):
        raise SystemExit("the two files' unpruned answers differ: they come from different models or settings")
    print(f"{len(ids)} questions, unpruned accuracy {baseline.mean():.3f}; {args.scorer}: new vs old")
    print(f"{'keep':>5} {'new':>7} {'old':>7} {'new-old':>8}  paired 95% CI")
    for keep in sorted((k for k in new if k != 1.0 and k in old), reverse=True):
        a = np.array([new[keep][i] for i in ids], dtype=float)
        b = np.array([old[keep][i] for i in ids], dtype=float)
        low, high = bootstrap_difference(a, b, baseline)
        share = lambda x: 100.0 * x.mean() / baseline.mean()
        print(f"{keep:>5.2f} {share(a):>7.1f} {share(b):>7.1f} {share(a) - share(b):>+8.1f}  [{low:+.1f}, {high:+.1f}]")


if __name__ == "__main__":
    main()
