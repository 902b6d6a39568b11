"""Tests of the data sources, spec parsing and prompting helpers."""

import json

import numpy as np
import pytest
from PIL import Image

from explainprune.data import Sample, is_correct, load_samples, normalize_answer
from explainprune.data.synthetic import COLOURS, QTYPES, SHAPES


def _fingerprint(sample: Sample) -> tuple:
    return sample.question, sample.answer, np.asarray(sample.image).tobytes()


def test_synthetic_is_deterministic_per_seed():
    first = load_samples("synthetic:split=train,seed=3,n=12,size=112|224")
    second = load_samples("synthetic:split=train,seed=3,n=12,size=112|224")
    other_seed = load_samples("synthetic:split=train,seed=4,n=12,size=112|224")
    assert [_fingerprint(s) for s in first] == [_fingerprint(s) for s in second]
    assert [_fingerprint(s) for s in first] != [_fingerprint(s) for s in other_seed]


def test_splits_are_disjoint():
    splits = {
        split: {_fingerprint(s) for s in load_samples(f"synthetic:split={split},seed=0,n=60,size=112")}
        for split in ("train", "val", "test")
    }
    assert not splits["train"] & splits["test"]
    assert not splits["val"] & splits["test"]
    assert not splits["train"] & splits["val"]


def test_samples_are_well_formed_and_balanced():
    samples = load_samples("synthetic:split=val,seed=1,n=120,size=112|168|448")
    assert {s.qtype for s in samples} == set(QTYPES)
    for sample in samples:
        assert sample.image.mode == "RGB" and sample.image.size[0] in (112, 168, 448)
        assert sample.answer == sample.answer.lower() and " " not in sample.answer
    yes = sum(s.answer == "yes" for s in samples)
    no = sum(s.answer == "no" for s in samples)
    assert abs(yes - no) <= 0.3 * (yes + no)


def test_masks_line_up_with_objects():
    for sample in load_samples("synthetic:split=test,seed=0,n=24,size=224"):
        assert sample.mask.shape == (224, 224)
        assert set(np.unique(sample.mask)) == {-1, *range(len(sample.objects))}
        pixels = np.asarray(sample.image).astype(int)
        for index, obj in enumerate(sample.objects):
            assert obj["colour"] in COLOURS and obj["shape"] in SHAPES
            ys, xs = np.nonzero(sample.mask == index)
            x0, y0, x1, y1 = obj["bbox"]
            assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1
            mean_colour = pixels[ys, xs].mean(axis=0)
            assert np.abs(mean_colour - COLOURS[obj["colour"]]).max() < 25


def test_answers_match_scenes():
    for sample in load_samples("synthetic:split=test,seed=0,n=60,size=224"):
        shapes = [o["shape"] for o in sample.objects]
        if sample.qtype == "count":
            shape = next(s for s in SHAPES if f" {s}" in sample.question.replace("crosses", "cross"))
            assert sample.answer == str(shapes.count(shape))
        if sample.qtype == "colour":
            (obj,) = [o for o in sample.objects if f"the {o['shape']}?" in sample.question]
            assert sample.answer == obj["colour"]


def test_easy_vqa_is_upscaled():
    samples = load_samples("easy-vqa:test,n=5")
    assert len(samples) == 5
    assert samples[0].image.size == (224, 224) and samples[0].answer


def test_jsonl_with_relative_image(tmp_path):
    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    path = tmp_path / "questions.jsonl"
    path.write_text(json.dumps({"image": "red.png", "question": "what colour?", "answer": "Red"}) + "\n")
    (sample,) = load_samples(str(path))
    assert sample.answer == "red" and sample.image.size == (32, 32)
    assert load_samples(f"jsonl:{path}")[0].question == "what colour?"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("imagenet:split=train", "unknown source"),
        ("synthetic:split=train,colour=red", "unknown key"),
        ("synthetic:n=ten", "n must be an integer"),
        ("synthetic:size=64", "size must be between"),
        ("synthetic:split=holdout", "split must be one of"),
        ("easy-vqa:validation", "easy-vqa split"),
        ("jsonl:/nonexistent/questions.jsonl", "not found"),
        ("synthetic:n", "expected key=value"),
    ],
)
def test_bad_specs_raise_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        load_samples(spec)


def test_answer_normalisation():
    assert normalize_answer("  Red. ") == "red"
    assert is_correct("Yes!", "yes")
    assert not is_correct("yes no", "yes")


def test_question_objects_are_the_ones_the_question_names():
    from explainprune.data.synthetic import generate_samples, question_objects, question_relevance

    for sample in generate_samples("test", 0, 60, [224], 3, 6):
        named = [sample.objects[i] for i in question_objects(sample)]
        question = sample.question
        if sample.qtype == "colour":
            assert [o["colour"] for o in named] == [sample.answer]  # the unique object of the named shape
        elif sample.qtype == "shape":
            assert [o["shape"] for o in named] == [sample.answer]
        elif sample.qtype == "count":
            assert len(named) == int(sample.answer)
        elif sample.qtype == "exists":
            assert named and all(o["colour"] in question or o["shape"] in question for o in named)
            assert (sample.answer == "yes") == any(f"{o['colour']} {o['shape']}" in question for o in named)
        else:
            assert len(named) == 2 and all(f"{o['colour']} {o['shape']}" in question for o in named)
        relevance = question_relevance(sample)
        assert set(np.unique(relevance).tolist()) <= {0.0, 1.0}
        assert (relevance == 1.0).sum() == np.isin(sample.mask, question_objects(sample)).sum()
