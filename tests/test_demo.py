"""`explainprune demo` runs end to end and writes its relevance picture."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from explainprune.cli import main
from explainprune.demo import relevance_picture
from explainprune.embedded import VIDEO_PREDICTOR_DIR


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--n", "8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "answer with all visual tokens" in out and "answer with 25% of the tokens" in out and "(16 of 64 kept)" in out
    picture = Image.open(tmp_path / "relevance.png")
    assert picture.size[0] >= 224 and picture.mode == "RGB"
    if (VIDEO_PREDICTOR_DIR / "config.json").is_file():
        assert "video question:" in out and "(64 of 256 kept)" in out  # 8 frames of 224 px: 4 x 8 x 8 tokens
        clip = Image.open(tmp_path / "video-relevance.png")
        assert clip.size == (2 * (4 * 224 + 3 * 4), 2 * 224) and clip.mode == "RGB"
    else:
        assert "no video predictor is shipped yet" in out and not (tmp_path / "video-relevance.png").exists()
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["n"] == 8 and {row["scorer"] for row in report["rows"]} == {"learned", "layer0", "uniform", "random"}
    assert (tmp_path / "retention.png").is_file()


def test_demo_runs_on_cpu_in_bf16(tmp_path, capsys):
    assert main(["demo", "--n", "4", "--out", str(tmp_path), "--device", "cpu", "--dtype", "bf16"]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert (report["device"], report["dtype"], report["n"]) == ("cpu", "bf16", 4)


def test_relevance_picture_greys_out_exactly_the_pruned_tokens_of_each_temporal_patch():
    """Two temporal patches of 2x2 tokens over four white 8x8 frames: the kept token of each patch stays
    white (no relevance on it), the others turn grey; panels show frames 0 and 2, 4 px apart."""
    frames = [Image.new("RGB", (8, 8), (255, 255, 255)) for _ in range(4)]
    kept = torch.tensor([True, False, False, False, False, False, False, True])
    picture = np.asarray(relevance_picture(frames, torch.zeros(8), kept, (2, 2, 2)))
    assert picture.shape == (16, 2 * (8 + 4 + 8), 3)
    first, second = picture[:, :16], picture[:, 24:]
    white, grey = np.array([255, 255, 255]), np.array([255 * 0.3 + 60] * 3).astype(np.uint8)
    assert (first[:8, :8] == white).all() and (first[8:, :] == grey).all() and (first[:8, 8:] == grey).all()
    assert (second[8:, 8:] == white).all() and (second[:8, :] == grey).all() and (second[8:, :8] == grey).all()
    assert (picture[:, 16:24] == white).all()


def test_relevance_picture_paints_relevance_red():
    frame = Image.new("RGB", (4, 4), (0, 0, 255))
    picture = np.asarray(relevance_picture([frame], torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.ones(4, dtype=torch.bool), (1, 2, 2)))
    assert picture[0, 0, 0] > 100 and picture[0, 0, 2] < 200  # the relevant token: red mixed in
    assert tuple(picture[-1, -1]) == (0, 0, 255)  # no relevance: unchanged
