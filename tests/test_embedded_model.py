"""The shipped embedded model and its predictor: loading, real accuracy, the learned scorer's default."""

from __future__ import annotations

import json

import pytest
import torch

from explainprune import Compressor
from explainprune.data import load_samples, make_inputs
from explainprune.embedded import EMBEDDED_DIR, PREDICTOR_DIR, load_embedded
from explainprune.embedded.auxiliary import cell_targets
from explainprune.embedded.conversations import relevant_objects
from explainprune.embedded.evaluate import evaluate_accuracy
from explainprune.predictor import Predictor

FIXED_HELD_OUT = "synthetic:split=test,seed=0,n=60,size=224"


@pytest.fixture(scope="module")
def embedded():
    return load_embedded()


def test_shipped_directory_is_small_and_documented():
    assert (EMBEDDED_DIR / "model.safetensors").stat().st_size <= 20 * 2**20
    report = json.loads((EMBEDDED_DIR / "training.json").read_text())
    assert report["settings"]["seed"] == 0 and "embedded" in report["command"]
    assert report["accuracy"]["synthetic_test_224"]["accuracy"] >= 0.95
    assert {"synthetic_test_112", "synthetic_test_336", "synthetic_test_448", "easy_vqa_test"} <= set(report["accuracy"])


def test_load_embedded_returns_the_qwen2_vl_model(embedded):
    model, processor = embedded
    assert model.config.model_type == "qwen2_vl" and not model.training
    assert processor.tokenizer.padding_side == "left"
    assert processor.image_processor.merge_size == 2


def test_answers_fixed_held_out_questions(embedded):
    model, processor = embedded
    result = evaluate_accuracy(model, processor, load_samples(FIXED_HELD_OUT), progress=False)
    assert result["n"] == 60 and result["accuracy"] >= 0.90, result


def test_learned_scorer_defaults_to_the_shipped_predictor(embedded):
    model, processor = embedded
    predictor = Predictor.from_pretrained(PREDICTOR_DIR)
    compressor = Compressor(model, processor, scorer="learned", keep_ratio=0.25)
    (sample,) = load_samples("synthetic:split=test,seed=0,n=1,size=224")
    stats = compressor.prepare(**make_inputs(processor, [sample])).stats
    assert compressor.scorer.predictors["image"].config == predictor.config
    assert stats.visual_after == [16] and stats.visual_before == [64]


def test_learned_relevance_lands_on_the_asked_about_objects(embedded):
    """At keep 0.25 the learned scorer keeps more of the queried objects' cells than the uniform lattice."""
    model, processor = embedded
    samples = [s for s in load_samples("synthetic:split=test,seed=0,n=48,size=224") if s.qtype in ("colour", "shape")]
    hits = {}
    for scorer in ("learned", "uniform"):
        compressor = Compressor(model, processor, scorer=scorer, keep_ratio=0.25)
        found = total = 0
        for sample in samples:
            encoded = compressor.encode(**make_inputs(processor, [sample]))
            kept = compressor.select(encoded, compressor.score(encoded))[0]
            span = encoded.spans[0][0]
            cells = torch.isin(cell_targets(sample.objects, sample.mask)["object"],
                               torch.tensor(relevant_objects(sample.qtype, sample.question, sample.objects)))
            found += int(torch.isin(span.positions[cells], kept).sum())
            total += int(cells.sum())
        hits[scorer] = found / total
    assert hits["learned"] > hits["uniform"] + 0.2, hits
