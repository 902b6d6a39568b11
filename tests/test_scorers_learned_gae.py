"""The `gae` (oracle) and `learned` scorers through Compressor, on every family."""

import pytest
import torch
from conftest import image, image_inputs, load_tiny

from explainprune import Compressor, ExplainPruneError
from explainprune.explain import gae, generate_answers
from explainprune.predictor import Predictor, PredictorMismatchError
from explainprune.prune import token_budget
from explainprune.embedded import EMBEDDED_DIR
from explainprune.scoring import make_scorer
from explainprune.scoring.learned import is_embedded_model, span_features


def prompt_inputs(processor):
    """Two left-padded prompts with images of different sizes."""
    return image_inputs(processor, [image(56, 56), image(84, 56, seed=1)], ["what colour is the circle?", "how many"])


def small_predictor(fingerprint, modality="image"):
    torch.manual_seed(0)
    config = {"arch": "grid", "n_heads": 4, "fingerprint": fingerprint, "modality": modality, "channels": [4, 4]}
    return Predictor(config).eval()


def assert_keeps_top_half(compressor, inputs, expected_scores):
    """Compressor keeps, per image, exactly the top-k tokens of `expected_scores`; generate runs."""
    encoded = compressor.encode(**inputs)
    kept = compressor.select(encoded)
    for b, spans in enumerate(encoded.spans):
        for span, scores in zip(spans, expected_scores[b]):
            k = token_budget(0.5, span.num_tokens)
            expected = set(span.positions[torch.topk(scores, k).indices].tolist())
            assert set(kept[b].tolist()) & set(span.positions.tolist()) == expected
    stats = compressor.prepare(**inputs).stats
    output = compressor.generate(**inputs, max_new_tokens=2)
    assert output.shape == (2, inputs["input_ids"].shape[1] + 2)
    assert stats.visual_after < stats.visual_before


def test_gae_scorer_keeps_the_most_relevant_tokens_of_the_models_own_answer(tiny):
    model, processor = tiny
    inputs = prompt_inputs(processor)
    compressor = Compressor(model, processor, scorer="gae", keep_ratio=0.5, max_new_tokens=2)
    encoded = compressor.encode(**inputs)
    relevance = gae(compressor.adapter, encoded, generate_answers(model, encoded, 2))
    assert_keeps_top_half(compressor, inputs, relevance)


def test_learned_scorer_keeps_the_top_predictions(tiny):
    model, processor = tiny
    inputs = prompt_inputs(processor)
    predictor = small_predictor(Compressor(model, processor).adapter.fingerprint)
    compressor = Compressor(model, processor, scorer="learned", keep_ratio=0.5, predictor=predictor)
    encoded = compressor.encode(**inputs)
    predictions = [
        [predictor.predict(features, span.grids) for features, span in zip(sample_features, spans)]
        for sample_features, spans in zip(span_features(compressor.adapter, encoded), encoded.spans)
    ]
    assert_keeps_top_half(compressor, inputs, predictions)


def test_learned_scorer_loads_a_predictor_directory(tiny_dirs, tmp_path):
    model, processor = load_tiny(tiny_dirs, "llava")
    inputs = prompt_inputs(processor)
    fingerprint = Compressor(model, processor).adapter.fingerprint
    small_predictor(fingerprint).save_pretrained(tmp_path / "predictor")
    compressor = Compressor(model, processor, scorer="learned", keep_ratio=0.5, predictor=str(tmp_path / "predictor"))
    assert compressor.prepare(**inputs).stats.visual_after == [8, 8]


def test_learned_scorer_requires_a_predictor_for_other_than_the_embedded_model(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "llava")
    compressor = Compressor(model, processor, scorer="learned", keep_ratio=0.5)
    with pytest.raises(ExplainPruneError, match="needs a predictor"):
        compressor.prepare(**prompt_inputs(processor))


def test_the_embedded_model_is_recognised_by_its_directory(tiny_dirs):
    model, _ = load_tiny(tiny_dirs, "qwen2-vl")
    assert not is_embedded_model(model)
    original = model.name_or_path
    model.name_or_path = str(EMBEDDED_DIR)
    try:
        assert is_embedded_model(model)
    finally:
        model.name_or_path = original


@pytest.mark.parametrize("fingerprint, modality", [("llava:other", "image"), (None, "video")])
def test_learned_scorer_refuses_a_predictor_of_another_model_or_modality(tiny_dirs, fingerprint, modality):
    model, processor = load_tiny(tiny_dirs, "llava")
    own = Compressor(model, processor).adapter.fingerprint
    predictor = small_predictor(fingerprint or own, modality)
    compressor = Compressor(model, processor, scorer="learned", keep_ratio=0.5, predictor=predictor)
    with pytest.raises(PredictorMismatchError):
        compressor.prepare(**prompt_inputs(processor))


@pytest.mark.parametrize("value", [0, 1.5, True])
def test_gae_scorer_refuses_a_bad_answer_length(value):
    with pytest.raises(ExplainPruneError, match="max_new_tokens"):
        make_scorer("gae", max_new_tokens=value)
