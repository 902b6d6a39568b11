"""The hostile-input findings of issue 10, one test each: each failed before its fix.

The rule: an input either works correctly (checked against the unpruned model or each sample alone)
or is refused with one line of ours (`ExplainPruneError`) naming what to change.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import image, load_tiny, prompt
from PIL import Image
from reference import assert_same_as_alone, greedy, new_tokens, small_predictor

from explainprune import Compressor, ExplainPruneError
from explainprune.bench.quality import evaluate
from explainprune.data import load_samples
from explainprune.predictor import Predictor
from explainprune.scoring.learned import LearnedScorer


def scorer_options(model, scorer):
    return {"predictor": small_predictor(model)} if scorer == "learned" else {}


@pytest.mark.parametrize("scorer", ["layer0", "learned"])
def test_a_batch_mixing_an_image_prompt_and_a_text_only_prompt_matches_each_alone(tiny, scorer):
    """Was: RuntimeError "cannot reshape tensor of 0 elements" on every family."""
    model, processor = tiny
    texts = [prompt(processor, "what colour is the circle?"), prompt(processor, "how many shapes?", kinds=())]
    batch = processor(text=texts, images=[image(84, 56)], padding=True, return_tensors="pt")
    singles = [
        processor(text=texts[:1], images=[image(84, 56)], return_tensors="pt"),
        processor(text=texts[1:], return_tensors="pt"),
    ]
    compressor = Compressor(model, processor, scorer=scorer, keep_ratio=0.5, **scorer_options(model, scorer))
    assert_same_as_alone(compressor, batch, singles)


def test_a_right_padded_batch_generates_as_the_left_padded_batch_and_each_sample_alone(tiny):
    """Was: wrong answers from Compressor.generate on a right-padded batch, even at keep 1.0."""
    model, processor = tiny
    texts = [prompt(processor, "what colour is the circle?"), prompt(processor, "is there a red square left of it?")]
    images = [image(84, 56, seed=1), image(56, 112, seed=2)]
    processor.tokenizer.padding_side = "right"
    try:
        right = processor(text=texts, images=images, padding=True, return_tensors="pt")
    finally:
        processor.tokenizer.padding_side = "left"
    left = processor(text=texts, images=images, padding=True, return_tensors="pt")
    assert not right["attention_mask"][:, -1].all()  # really right-padded
    unpruned = new_tokens(greedy(model, left), left)
    assert torch.equal(new_tokens(greedy(Compressor(model, processor, keep_ratio=1.0), right), right), unpruned)
    singles = [processor(text=[t], images=[i], return_tensors="pt") for t, i in zip(texts, images)]
    assert_same_as_alone(Compressor(model, processor, keep_ratio=0.5), right, singles)


def nan_predictor(model) -> Predictor:
    predictor = small_predictor(model)
    with torch.no_grad():
        predictor.head.weight.fill_(float("nan"))
    return predictor


def test_a_predictor_with_nan_weights_is_refused_at_load_and_at_use(tiny_dirs, tmp_path):
    """Was: NaN scores, arbitrary tokens kept, no error."""
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    predictor = nan_predictor(model)
    predictor.save_pretrained(tmp_path / "nan")
    with pytest.raises(ExplainPruneError, match=r"model.safetensors has NaN or infinite weights \(head.weight\): retrain"):
        Predictor.from_pretrained(tmp_path / "nan")
    with pytest.raises(ExplainPruneError, match="NaN or infinite weights"):
        Compressor(model, processor, scorer="learned", predictor=predictor)
    scorer = LearnedScorer(small_predictor(model))
    with torch.no_grad():
        scorer.predictors["image"].head.bias.fill_(float("nan"))  # broken after the check: refused when used
    inputs = processor(text=[prompt(processor)], images=[image(56, 56)], return_tensors="pt")
    with pytest.raises(ExplainPruneError, match="NaN scores"):
        Compressor(model, processor, scorer=scorer, keep_ratio=0.5).prepare(**inputs)


def test_return_dict_in_generate_returns_the_models_output_with_the_prompt_ids(tiny):
    """Was: AttributeError 'GenerateDecoderOnlyOutput' object has no attribute 'to', every family."""
    model, processor = tiny
    inputs = processor(text=[prompt(processor)], images=[image(56, 84)], return_tensors="pt")
    compressor = Compressor(model, processor, keep_ratio=1.0)
    options = {"max_new_tokens": 3, "do_sample": False, "return_dict_in_generate": True, "output_scores": True}
    with torch.no_grad():
        output = compressor.generate(**inputs, **options)
        reference = model.generate(**inputs, **options)
    assert torch.equal(output.sequences, reference.sequences)
    assert len(output.scores) == 3 and torch.allclose(output.scores[0], reference.scores[0], atol=1e-4)


def test_fastv_returns_a_generate_output_when_asked(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    inputs = processor(text=[prompt(processor)], images=[image(56, 84)], return_tensors="pt")
    compressor = Compressor(model, processor, scorer="fastv", keep_ratio=0.5, layer=1)
    output = compressor.generate(**inputs, max_new_tokens=3, return_dict_in_generate=True)
    assert torch.equal(output.sequences, greedy(compressor, inputs))


def test_a_prompt_that_ends_with_its_image_is_refused_naming_the_fix(tiny, family):
    """Was: AttributeError 'NoneType' object has no attribute 'mean' in layer0."""
    model, processor = tiny
    image_token = processor.tokenizer.convert_ids_to_tokens(model.config.image_token_id)
    text = "describe " + ("<|vision_start|><|image_pad|>" if family.startswith("qwen") else image_token)
    inputs = processor(text=[text], images=[image(56, 56)], return_tensors="pt")
    assert inputs["input_ids"][0, -1] == model.config.image_token_id
    for scorer in ("layer0", "learned"):
        compressor = Compressor(model, processor, scorer=scorer, keep_ratio=0.5, **scorer_options(model, scorer))
        with pytest.raises(ExplainPruneError, match="no text after its last image .* put the question after the image"):
            compressor.prepare(**inputs)
    uniform = Compressor(model, processor, scorer="uniform", keep_ratio=0.5)
    assert uniform.prepare(**inputs).stats.visual_after[0] < uniform.prepare(**inputs).stats.visual_before[0]


def write_jsonl(tmp_path, records) -> str:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    """Was: every pixel above 255 of 65535 became 255 (white)."""
    values = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    (sample,) = load_samples(write_jsonl(tmp_path, [{"image": "deep.png", "question": "what?", "answer": "red"}]))
    expected = np.rint(values / 257).astype(np.uint8)
    assert np.array_equal(np.asarray(sample.image), np.repeat(expected[..., None], 3, axis=2))


@pytest.mark.parametrize("answer", [None, ["red"], {"text": "red"}, True])
def test_a_jsonl_answer_that_is_not_a_string_is_refused_with_its_line(tmp_path, answer):
    """Was: a null answer scored as the string "none"."""
    path = write_jsonl(tmp_path, [{"image": "a.png", "question": "what?", "answer": answer}])
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(ExplainPruneError, match=r"questions.jsonl:1: answer must be a string or a number"):
        load_samples(path)


def test_an_empty_jsonl_is_refused(tmp_path):
    """Was: eval exited 0 with a table of NaN."""
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ExplainPruneError, match="empty.jsonl holds no samples"):
        load_samples(str(tmp_path / "empty.jsonl"))


def test_a_png_that_is_not_an_image_is_refused_with_its_line(tmp_path):
    (tmp_path / "fake.png").write_text("not an image")
    path = write_jsonl(tmp_path, [{"image": "fake.png", "question": "what?", "answer": "red"}])
    with pytest.raises(ExplainPruneError, match=r"questions.jsonl:1: .*fake.png is not an image file PIL can read"):
        load_samples(path)


@pytest.mark.parametrize(
    "keep_ratios, batch_size, message",
    [
        ([1.0, 0.5, 0.5], 4, "keep ratios must be a non-empty list without repeats"),
        ([1.0, 0.5], -1, "batch_size must be an integer >= 1"),
        ([1.0, 0.5], 0, "batch_size must be an integer >= 1"),
    ],
)
def test_evaluate_refuses_repeated_keep_ratios_and_batch_sizes_below_one(tiny_dirs, keep_ratios, batch_size, message):
    """Was: a raw IndexError (--keep 1,0.5,0.5) and an exit 0 with NaN (--batch-size -1)."""
    model, processor = load_tiny(tiny_dirs, "llava")
    samples = load_samples("synthetic:n=2,size=112")
    with pytest.raises(ExplainPruneError, match=message):
        evaluate(model, processor, samples, ["random"], keep_ratios, batch_size=batch_size, progress=False)


def test_evaluate_refuses_no_samples_and_samples_without_an_answer(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "llava")
    with pytest.raises(ExplainPruneError, match="no samples to evaluate"):
        evaluate(model, processor, [], ["random"], [1.0, 0.5], progress=False)
    samples = load_samples("synthetic:n=2,size=112")
    samples[1].answer = ""
    with pytest.raises(ExplainPruneError, match="1 sample\\(s\\) have no answer to score against"):
        evaluate(model, processor, samples, ["random"], [1.0, 0.5], progress=False)


def test_an_image_the_processor_refuses_is_named_in_one_line(tiny_dirs):
    """Qwen2-VL's processor refuses aspect ratios above 200; the sample is named."""
    from explainprune.data import make_inputs

    _, processor = load_tiny(tiny_dirs, "qwen2-vl")
    samples = load_samples("synthetic:n=3,size=112")
    samples[1].image = image(4, 1000)
    with pytest.raises(ExplainPruneError, match=r"refused sample 'synthetic-train-0-1' \(4x1000 image\): absolute aspect ratio"):
        make_inputs(processor, samples)


def tiny_jsonl(directory, n: int = 3, seed: int = 0) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(n):
        image(56, 56, seed=seed + index).save(directory / f"{index}.png")
    records = [{"id": f"s{i}", "image": f"{i}.png", "question": "what colour is it?", "answer": "?"} for i in range(n)]
    return write_jsonl(directory, records)


def test_collect_refuses_to_resume_a_directory_of_another_data_spec(tiny_dirs, tmp_path):
    """Was: kept the old records and rewrote the manifest to claim the new spec."""
    from explainprune.collect import collect
    from explainprune.run_configs import CollectConfig

    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    first, second = tiny_jsonl(tmp_path / "a"), tiny_jsonl(tmp_path / "b", seed=10)
    settings = {"model": "tiny", "max_new_tokens": 2, "keep_incorrect": True, "explainer": "rollout"}
    out = tmp_path / "out"
    manifest = collect(CollectConfig(data=first, limit=2, **settings), out, model, processor)
    assert (manifest["data"], manifest["limit"], manifest["records"]) == (first, 2, 2)
    before = (out / "manifest.json").read_text()
    with pytest.raises(ExplainPruneError, match=r"holds data collected with data='.*a/questions.jsonl', not data='.*b/questions.jsonl': rerun with those settings"):
        collect(CollectConfig(data=second, **settings), out, model, processor)
    with pytest.raises(ExplainPruneError, match=r"max_new_tokens=2, not max_new_tokens=3"):
        collect(CollectConfig(data=first, **{**settings, "max_new_tokens": 3}), out, model, processor)
    assert (out / "manifest.json").read_text() == before
    resumed = collect(CollectConfig(data=first, limit=3, batch_size=1, **settings), out, model, processor)
    assert (resumed["records"], resumed["limit"], resumed["batch_size"]) == (3, 3, 1)  # resumable settings may change


@pytest.mark.parametrize("limit", [-1, 0, 1.5, True])
def test_collect_refuses_a_limit_below_one(limit):
    """Was: `--limit -1` silently dropped the last sample."""
    from explainprune.run_configs import CollectConfig

    with pytest.raises(ExplainPruneError, match="--limit must be an integer >= 1"):
        CollectConfig(model="embedded", data="synthetic:n=3", limit=limit)


def test_a_diverging_predictor_training_is_stopped_not_saved(tmp_path):
    """A relative of the NaN-weights finding: training that turns NaN never writes a predictor."""
    from explainprune.predictor import Record, ShardWriter, train_predictor
    from explainprune.run_configs import PredictorTrainingConfig

    identity = {"fingerprint": "f", "explainer": "gae", "explainer_options": {}, "modality": "image"}
    with ShardWriter(tmp_path / "data", identity) as writer:
        for index in range(20):
            features = torch.rand(4, 4) + 0.1
            writer.add(Record(f"r{index}", features, features[:, 0] / features[:, 0].sum(), ((1, 2, 2),)))
    config = PredictorTrainingConfig(data=str(tmp_path / "data"), lr=1e30, epochs=3, val_fraction=0.3)
    with pytest.raises(ExplainPruneError, match="training diverged in epoch .*: lower --lr"):
        train_predictor(config, tmp_path / "predictor")
    assert not (tmp_path / "predictor" / "model.safetensors").exists()


def test_gae_explains_the_same_answers_for_a_right_padded_batch(tiny_dirs):
    """A relative of the right-padding finding: the gae scorer (and collect) generated the answers it
    explains on the right-padded prompts, so the shorter prompts of a right-padded batch explained
    other answers."""
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    texts = [prompt(processor, "what colour is the circle?"), prompt(processor, "is there a red square?")]
    images = [image(56, 56, seed=1), image(168, 168, seed=2)]  # the first prompt is the shorter
    processor.tokenizer.padding_side = "right"
    try:
        right = processor(text=texts, images=images, padding=True, return_tensors="pt")
    finally:
        processor.tokenizer.padding_side = "left"
    alone = processor(text=texts[:1], images=images[:1], return_tensors="pt")
    compressor = Compressor(model, processor, scorer="gae", keep_ratio=0.5, max_new_tokens=3)
    in_batch = compressor.score(compressor.encode(**right))[0][0]
    assert torch.allclose(in_batch, compressor.score(compressor.encode(**alone))[0][0], rtol=1e-3, atol=1e-6)
