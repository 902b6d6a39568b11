"""`explainprune eval`: the report's schema, the keep-1.0 rows, bootstrap intervals, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from PIL import Image

from explainprune.bench.quality import bootstrap_difference, bootstrap_retention, retention_by_type, retention_report
from explainprune.cli import main
from explainprune.data import load_samples


def test_eval_writes_the_documented_json(tiny_dirs, tmp_path, capsys):
    out, plot = tmp_path / "report.json", tmp_path / "retention.png"
    code = main([
        "eval", "--model", str(tiny_dirs["qwen2-vl"]), "--data", "synthetic:split=test,seed=3,n=6,size=112",
        "--keep", "1,0.5,0.25", "--scorers", "layer0,random,uniform", "--json", str(out), "--plot", str(plot),
        "--batch-size", "4",
    ])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report) == {"model", "data", "device", "dtype", "options", "n", "baseline_accuracy", "rows"}
    assert (report["device"], report["dtype"]) == ("cpu", "fp32")
    assert report["n"] == 6 and len(report["rows"]) == 9
    for row in report["rows"]:
        assert set(row) == {"scorer", "keep_ratio", "accuracy", "retention", "retention_ci", "visual_tokens", "oracle"}
        assert len(row["retention_ci"]) == 2
    by_keep = {(r["scorer"], r["keep_ratio"]): r for r in report["rows"]}
    full = by_keep[("layer0", 1.0)]["visual_tokens"]
    assert full == 16.0  # 112 px -> 4 x 4 merged tokens
    assert by_keep[("random", 0.5)]["visual_tokens"] == 8.0 and by_keep[("uniform", 0.25)]["visual_tokens"] == 4.0
    assert plot.stat().st_size > 1000
    assert "layer0" in capsys.readouterr().out


def test_bootstrap_interval_contains_the_point_estimate():
    rng = np.random.default_rng(0)
    baseline = (rng.random(400) < 0.9).astype(float)
    pruned = baseline * (rng.random(400) < 0.8)
    low, high = bootstrap_retention(pruned, baseline)
    point = 100 * pruned.mean() / baseline.mean()
    assert low < point < high and high - low < 15


def test_eval_reports_paired_differences_to_the_reference_and_marks_oracles(tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main([
        "eval", "--model", "embedded", "--data", "synthetic:split=test,seed=3,n=8,size=224",
        "--keep", "1,0.25", "--scorers", "random,divprune,mask-oracle", "--reference", "random,divprune",
        "--option", "random.seed=3", "--json", str(out), "--batch-size", "4", "--markdown", str(tmp_path / "t.md"),
    ])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    header, rule, *lines = (tmp_path / "t.md").read_text().splitlines()
    assert header == "| scorer | keep 0.25 | vs random @ 0.25 | vs divprune @ 0.25 |" and rule.count("|") == 5
    for line, name in zip(lines, ["random", "divprune", "mask-oracle"], strict=True):
        row = next(r for r in report["rows"] if (r["scorer"], r["keep_ratio"]) == (name, 0.25))
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0].startswith(f"`{name}`") and cells[1].startswith(f"{row['retention']:.1f} [")
        for column, reference in enumerate(["random", "divprune"], start=2):
            difference = f"{row['vs'][reference]['difference']:+.1f} ["
            assert cells[column] == "–" if name == reference else cells[column].strip("*").startswith(difference)
    assert report["references"] == ["random", "divprune"] and report["options"] == {"random": {"seed": "3"}}
    rows = {(r["scorer"], r["keep_ratio"]): r for r in report["rows"]}
    for reference in ("random", "divprune"):
        assert rows[(reference, 0.25)]["vs"][reference] == {"difference": 0.0, "ci": [0.0, 0.0]}
        for name in ("random", "divprune", "mask-oracle"):
            row, versus = rows[(name, 0.25)], rows[(name, 0.25)]["vs"][reference]
            assert versus["difference"] == round(row["retention"] - rows[(reference, 0.25)]["retention"], 2)
            assert versus["ci"][0] <= versus["difference"] <= versus["ci"][1]
    assert rows[("mask-oracle", 0.25)]["oracle"] and not rows[("divprune", 0.25)]["oracle"]
    printed = capsys.readouterr().out
    assert "vs random" in printed and "vs divprune" in printed and "mask-oracle *" in printed and "* oracle:" in printed


def test_paired_difference_interval_contains_the_point_estimate():
    rng = np.random.default_rng(0)
    baseline = (rng.random(400) < 0.9).astype(float)
    reference = baseline * (rng.random(400) < 0.7)
    better = np.maximum(reference, baseline * (rng.random(400) < 0.5))
    low, high = bootstrap_difference(better, reference, baseline)
    point = 100 * (better.mean() - reference.mean()) / baseline.mean()
    assert 0 < low < point < high
    assert bootstrap_difference(reference, reference, baseline) == [0.0, 0.0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--keep", "0,0.5"], "argument --keep: keep ratios must be in (0, 1]"),
        (["eval", "--scorers", "random", "--reference", "learned"], "--reference 'learned' must be one of --scorers"),
        (["eval", "--scorers", "random", "--option", "seed=3"], "expected SCORER.KEY=VALUE"),
        (["eval", "--scorers", "random", "--option", "dart.layer=3"], "scorer 'dart' is not in --scorers"),
        (["eval", "--scorers", "dart", "--option", "dart.depth=3"], "scorer 'dart' does not take option(s) ['depth']"),
        (["eval", "--scorers", "learned-coverage", "--option", "learned-coverage.alpha=0"], "alpha must be a positive number, got 0"),
        (["eval", "--scorers", "layer0,attn"], "unknown scorer 'attn'; known scorers:"),
        (["eval", "--model", "/nonexistent/model", "--scorers", "random"], "not 'embedded' and not a model directory"),
    ],
)
def test_eval_reports_bad_arguments_clearly(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_retention_by_type_is_each_types_questions_alone():
    # 6 questions of type a (unpruned right on 4), 4 of type b (right on all): a scorer keeps 2 of a, all of b
    qtypes = ["a"] * 6 + ["b"] * 4
    correct = {("baseline", 1.0): [1, 1, 1, 1, 0, 0, 1, 1, 1, 1], ("s", 0.5): [1, 1, 0, 0, 0, 0, 1, 1, 1, 1]}
    by_type = retention_by_type(correct, qtypes, ["s"], [1.0, 0.5])
    assert list(by_type) == ["a", "b"]
    rows = {qtype: {row["keep_ratio"]: row for row in sub["rows"]} for qtype, sub in by_type.items()}
    assert (by_type["a"]["n"], by_type["a"]["baseline_accuracy"], rows["a"][0.5]["retention"]) == (6, 0.6667, 50.0)
    assert (by_type["b"]["n"], rows["b"][0.5]["retention"], rows["b"][1.0]["retention"]) == (4, 100.0, 100.0)
    overall = retention_report(correct, ["s"], [1.0, 0.5])
    assert {row["keep_ratio"]: row["retention"] for row in overall["rows"]}[0.5] == 75.0


def test_eval_by_type_reports_each_question_type(tmp_path, capsys):
    out, markdown = tmp_path / "report.json", tmp_path / "t.md"
    code = main([
        "eval", "--model", "embedded", "--data", "synthetic:split=test,seed=3,n=12,size=112", "--keep", "1,0.25",
        "--scorers", "random,uniform", "--by-type", "--json", str(out), "--markdown", str(markdown), "--batch-size", "6",
    ])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    samples = load_samples("synthetic:split=test,seed=3,n=12,size=112")
    assert list(report["by_type"]) == list(dict.fromkeys(s.qtype for s in samples))
    assert sum(sub["n"] for sub in report["by_type"].values()) == 12
    # the per-type accuracies recombine into the overall accuracy of every row
    for row in report["rows"]:
        per_type = [next(r for r in sub["rows"] if (r["scorer"], r["keep_ratio"]) == (row["scorer"], row["keep_ratio"]))
                    for sub in report["by_type"].values()]
        weighted = sum(r["accuracy"] * sub["n"] for r, sub in zip(per_type, report["by_type"].values())) / 12
        assert abs(weighted - row["accuracy"]) < 1e-3
    printed = capsys.readouterr().out
    assert "retention (%) per question type at keep 0.25" in printed and "Unpruned accuracy per type:" in printed
    table = markdown.read_text().split("Retention (%) per question type at keep 0.25:")[1].strip().splitlines()
    assert table[0] == "| scorer | " + " | ".join(report["by_type"]) + " |" and len(table) >= 4
    uniform = next(r for r in report["by_type"][next(iter(report["by_type"]))]["rows"] if (r["scorer"], r["keep_ratio"]) == ("uniform", 0.25))
    assert table[3].startswith("| `uniform` | " + ("n/a" if uniform["retention"] is None else f"{uniform['retention']:.1f}"))


def test_eval_by_type_refuses_untyped_data(tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (56, 56)).save(image)
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"image": str(image), "question": "what?", "answer": "x"}) + "\n")
    assert main(["eval", "--model", "embedded", "--data", str(data), "--scorers", "random", "--by-type"]) == 2
    assert "--by-type needs typed data" in capsys.readouterr().err
