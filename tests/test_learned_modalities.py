"""The `learned` scorer picks the predictor of each span's modality (image or video)."""

import pytest
import torch
from conftest import image, load_tiny, prompt, video

import explainprune.scoring.learned as learned
from explainprune import Compressor, ExplainPruneError
from explainprune.scoring.learned import span_features
from explainprune.collect import collect
from explainprune.data import load_samples
from explainprune.embedded import EMBEDDED_DIR
from explainprune.predictor import Predictor, PredictorMismatchError, load_records, train_predictor
from explainprune.prune import token_budget
from explainprune.run_configs import CollectConfig, PredictorTrainingConfig


def predictor_for(model, processor, modality: str, seed: int) -> Predictor:
    torch.manual_seed(seed)
    fingerprint = Compressor(model, processor).adapter.fingerprint
    config = {"arch": "grid", "n_heads": 4, "fingerprint": fingerprint, "modality": modality, "channels": [4, 4]}
    return Predictor(config).eval()


def mixed_inputs(processor):
    """An image prompt and a video prompt (4 frames: two temporal patches) in one left-padded batch."""
    texts = [prompt(processor, "what colour is the circle?", ("image",)), prompt(processor, "what moves?", ("video",))]
    return processor(text=texts, images=[image(56, 56)], videos=[video(4, 56)], padding=True, return_tensors="pt")


def test_each_span_is_scored_by_the_predictor_of_its_modality(tiny_dirs, tmp_path):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    image_predictor = predictor_for(model, processor, "image", seed=0)
    video_predictor = predictor_for(model, processor, "video", seed=1)
    video_predictor.save_pretrained(tmp_path / "video")  # a directory and an instance, in either order
    compressor = Compressor(model, processor, "learned", keep_ratio=0.5, predictor=[str(tmp_path / "video"), image_predictor])
    inputs = mixed_inputs(processor)
    encoded = compressor.encode(**inputs)
    (image_features,), (video_features,) = span_features(compressor.adapter, encoded)
    scores = compressor.score(encoded)
    (image_span,), (video_span,) = encoded.spans
    assert image_span.modality == "image" and video_span.modality == "video" and video_span.grids[0][0] == 2
    expected_image = image_predictor.predict(image_features, image_span.grids)
    expected_video = video_predictor.predict(video_features, video_span.grids)
    torch.testing.assert_close(scores[0][0], expected_image)
    torch.testing.assert_close(scores[1][0], expected_video)
    # the other modality's predictor would rank the clip differently: the choice matters
    assert not torch.allclose(image_predictor.predict(video_features, video_span.grids), expected_video)
    assert compressor.prepare(**inputs).stats.visual_after == [image_span.num_tokens // 2, video_span.num_tokens // 2]


def test_a_missing_modality_is_named(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    compressor = Compressor(model, processor, "learned", predictor=predictor_for(model, processor, "image", 0))
    with pytest.raises(PredictorMismatchError, match="given image predictors but the input has video"):
        compressor.prepare(**mixed_inputs(processor))


def test_two_predictors_of_one_modality_are_refused(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    twice = [predictor_for(model, processor, "image", 0), predictor_for(model, processor, "image", 1)]
    with pytest.raises(ExplainPruneError, match="two image predictors"):
        Compressor(model, processor, "learned", predictor=twice)


def test_the_embedded_model_without_a_shipped_video_predictor_says_how_to_make_one(tiny_dirs, tmp_path, monkeypatch):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    monkeypatch.setitem(learned.PREDICTOR_DIRS, "video", tmp_path / "predictor-video")
    monkeypatch.setattr(model, "name_or_path", str(EMBEDDED_DIR))
    compressor = Compressor(model, processor, "learned", predictor=predictor_for(model, processor, "image", 0))
    with pytest.raises(ExplainPruneError, match="ships no video predictor yet .*explainprune collect --model embedded"):
        compressor.prepare(**mixed_inputs(processor))


def test_a_video_predictor_from_collect_and_train_scores_clips(tiny_dirs, tmp_path):
    """collect on clips records video grids (t > 1); the predictor trained on them declares video and
    the learned scorer uses it for clips, next to an image predictor."""
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    spec = "synthetic-video:split=train,seed=0,n=6,size=112,frames=4"
    config = CollectConfig(model="tiny-qwen2-vl", data=spec, batch_size=3, max_new_tokens=2, keep_incorrect=True)
    manifest = collect(config, tmp_path / "records", model, processor)
    assert manifest["modality"] == "video" and manifest["records"] == 6
    _, records = load_records(tmp_path / "records")
    assert all(len(r.grids) == 1 and r.grids[0][0] == 2 for r in records)  # 4 frames: 2 temporal patches
    train_predictor(PredictorTrainingConfig(data=str(tmp_path / "records"), arch="grid", epochs=1, val_fraction=0.34), tmp_path / "video")
    video_predictor = Predictor.from_pretrained(tmp_path / "video")
    assert video_predictor.modality == "video"
    image_predictor = predictor_for(model, processor, "image", seed=0)
    compressor = Compressor(model, processor, "learned", keep_ratio=0.25, predictor=[image_predictor, tmp_path / "video"])
    inputs = mixed_inputs(processor)
    (video_span,) = compressor.encode(**inputs).spans[1]
    assert compressor.prepare(**inputs).stats.visual_after[1] == token_budget(0.25, video_span.num_tokens)


def test_collect_refuses_mixed_modalities(tiny_dirs, tmp_path, monkeypatch):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    mixed = load_samples("synthetic:split=val,n=1,size=112") + load_samples("synthetic-video:split=val,n=1,size=112,frames=4")
    monkeypatch.setattr("explainprune.collect.load_samples", lambda spec: mixed)
    with pytest.raises(ValueError, match="one modality"):
        collect(CollectConfig(model="tiny-qwen2-vl", data="mixed"), tmp_path / "records", model, processor)
