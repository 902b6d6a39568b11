"""`explainprune demo` runs end to end and writes its relevance picture."""

from __future__ import annotations

import json

from PIL import Image

from explainprune.cli import main


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--n", "8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "answer with all visual tokens" in out and "answer with 25% of the tokens" in out and "(16 of 64 kept)" in out
    picture = Image.open(tmp_path / "relevance.png")
    assert picture.size[0] >= 224 and picture.mode == "RGB"
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["n"] == 8 and {row["scorer"] for row in report["rows"]} == {"learned", "layer0", "uniform", "random"}
    assert (tmp_path / "retention.png").is_file()


def test_demo_runs_on_cpu_in_bf16(tmp_path, capsys):
    assert main(["demo", "--n", "4", "--out", str(tmp_path), "--device", "cpu", "--dtype", "bf16"]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert (report["device"], report["dtype"], report["n"]) == ("cpu", "bf16", 4)
