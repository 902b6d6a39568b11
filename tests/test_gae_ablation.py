"""The GAE ablation: object cells from the generator's masks, the location metrics, the command."""

import json

import pytest
import torch

from explainprune.data import load_samples
from explainprune.errors import ExplainPruneError
from explainprune.explain.ablation import location, main, object_cells, parse_rows, row_variant
from explainprune.explain.gae import PRESETS, GAEVariant


def test_object_cells_are_the_cells_of_the_asked_about_object():
    samples = load_samples("synthetic:split=test,seed=0,n=12,size=224")
    sample = next(s for s in samples if s.qtype == "colour")
    shape = sample.question.split()[-1].rstrip("?")
    (target,) = [o for o in sample.objects if o["shape"] == shape]
    cells = object_cells(sample).reshape(8, 8)
    x0, y0, x1, y1 = target["bbox"]
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[y0 // 28 : (y1 - 1) // 28 + 1, x0 // 28 : (x1 - 1) // 28 + 1] = True
    assert cells.any() and not (cells & ~inside).any()
    assert cells[int((y0 + y1) / 2 // 28), int((x0 + x1) / 2 // 28)]


def test_no_object_cells_without_masks_or_asked_about_objects():
    counts = [s for s in load_samples("synthetic:split=test,seed=0,n=60,size=224") if s.qtype == "count"]
    zero = next(s for s in counts if s.answer == "0")
    some = next(s for s in counts if s.answer != "0")
    assert object_cells(zero) is None
    assert int(object_cells(some).sum()) > 0
    some.mask = None
    assert object_cells(some) is None


def test_location_share_and_recall_on_hand_made_scores():
    cells = torch.tensor([True, True, False, False, False, False, False, False])
    scores = torch.tensor([4.0, 0.0, 3.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    share, recall = location(scores, cells)  # top 2 of 8: tokens 0 and 2
    assert share == pytest.approx(0.4) and recall == pytest.approx(0.5)


def test_rows_are_presets_variants_or_references():
    assert row_variant("paper") == PRESETS["paper"]
    assert row_variant("margin/centred/max/first") == GAEVariant("margin", "centred", "max", "first")
    assert row_variant("layer0") is None
    assert parse_rows("paper, layer0") == ["paper", "layer0"]
    with pytest.raises(ExplainPruneError, match="unknown row 'lime'"):
        parse_rows("lime")
    with pytest.raises(ExplainPruneError, match="heads must be one of"):
        parse_rows("logit/probs/median/all")


def test_ablation_command_writes_tables_and_resumes_from_its_checkpoint(tmp_path):
    out, state = tmp_path / "ablation.md", tmp_path / "state.json"
    data = "synthetic:split=test,seed=0,n=4,size=224"
    argv = ["--data", data, "--rows", "paper,default,random", "--keep", "0.25", "--batch-size", "2",
            "--out", str(out), "--state", str(state)]  # fmt: skip
    assert main(argv) == 0
    text = out.read_text()
    assert "python -m explainprune.explain.ablation --data" in text
    assert "| logit/probs/mean/all (paper) |" in text and "| logprob/centred/mean/no-eos (default) |" in text
    assert "## Where the relevance lands: scenes 224 px" in text and "object tokens (chance)" in text
    checkpoint = json.loads(state.read_text())
    samples = checkpoint["data"][data]
    assert len(samples) == 4
    first, *_, last = list(samples)
    del samples[last], samples[list(samples)[2]]  # as if killed after the first batch
    samples[first]["kept from the first run"] = True
    state.write_text(json.dumps(checkpoint))
    out.unlink()
    assert main(argv) == 0
    assert out.read_text() == text
    resumed = json.loads(state.read_text())["data"][data]
    assert len(resumed) == 4 and resumed[first]["kept from the first run"]
    assert main([*argv[:3], "paper", *argv[4:]]) == 2  # other rows: the checkpoint is refused


def test_ablation_command_names_a_bad_row(capsys):
    assert main(["--rows", "lime"]) == 2
    assert "explainprune.explain.ablation: error: unknown row 'lime'" in capsys.readouterr().err
