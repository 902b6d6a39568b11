"""`explainprune eval`: the report's schema, the keep-1.0 rows, bootstrap intervals, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explainprune.bench.quality import bootstrap_difference, bootstrap_retention
from explainprune.cli import main


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
        (["eval", "--scorers", "layer0,attn"], "unknown scorer 'attn'; known scorers:"),
        (["eval", "--model", "/nonexistent/model", "--scorers", "random"], "not 'embedded' and not a model directory"),
    ],
)
def test_eval_reports_bad_arguments_clearly(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
