"""`explainprune demo` runs end to end and writes its relevance picture."""

from __future__ import annotations

from PIL import Image

from explainprune.cli import main


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--n", "8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "keep 1.0" in out or "answer with all visual tokens" in out
    picture = Image.open(tmp_path / "relevance.png")
    assert picture.size[0] >= 224 and picture.mode == "RGB"
