"""`explainprune eval`: the report's schema, the keep-1.0 rows, bootstrap intervals, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explainprune.bench.quality import bootstrap_retention
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
    assert set(report) == {"model", "data", "device", "dtype", "n", "baseline_accuracy", "rows"}
    assert (report["device"], report["dtype"]) == ("cpu", "fp32")
    assert report["n"] == 6 and len(report["rows"]) == 9
    for row in report["rows"]:
        assert set(row) == {"scorer", "keep_ratio", "accuracy", "retention", "retention_ci", "visual_tokens"}
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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--keep", "0,0.5"], "argument --keep: keep ratios must be in (0, 1]"),
        (["eval", "--scorers", "layer0,attn"], "unknown scorer 'attn'; known scorers:"),
        (["eval", "--model", "/nonexistent/model", "--scorers", "random"], "not 'embedded' and not a model directory"),
    ],
)
def test_eval_reports_bad_arguments_clearly(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
