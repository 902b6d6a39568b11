"""The embedded model's recipe: model/processor construction, targets and losses, a short training run
that saves a directory the Auto classes load (the shipped model itself: test_embedded_model.py)."""

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

import explainprune.embedded as embedded
from explainprune.data import load_samples, make_inputs
from explainprune.embedded.auxiliary import attention_loss, cell_targets, stack_targets
from explainprune.embedded.build import build_model, build_processor
from explainprune.embedded.conversations import relevant_objects
from explainprune.embedded.train import train_embedded


@pytest.fixture(scope="module")
def built():
    processor = build_processor()
    return build_model(processor), processor


def test_missing_directory_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(embedded, "EMBEDDED_DIR", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="embedded model not found"):
        embedded.load_embedded()


def test_config_matches_tokenizer(built):
    model, processor = built
    tokenizer = processor.tokenizer
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert model.config.text_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.config.text_config.pad_token_id == tokenizer.pad_token_id


@pytest.mark.parametrize(("size", "tokens"), [(224, 64), (448, 256)])
def test_visual_token_count(built, size, tokens):
    _, processor = built
    (sample,) = load_samples(f"synthetic:split=test,n=1,size={size}")
    inputs = make_inputs(processor, [sample])
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == tokens


def test_cell_targets_follow_token_grid():
    (sample,) = load_samples("synthetic:split=val,n=1,size=224")
    targets = cell_targets(sample.objects, sample.mask)
    assert targets["colour"].shape == (64,) and targets["position"].shape == (64, 2)
    assert int(targets["centre"].sum()) == len(sample.objects)
    assert (targets["colour"] > 0).any()


def test_stacked_targets_number_objects_across_images():
    samples = load_samples("synthetic:split=val,n=2,size=224")
    targets = [cell_targets(s.objects, s.mask) for s in samples]
    stacked = stack_targets(targets)
    first = len(samples[0].objects)
    assert stacked["object"][:64].max() == first - 1 and stacked["object"][64:].max() == first + len(samples[1].objects) - 1
    assert torch.equal(stacked["object"] == -1, torch.cat([t["object"] for t in targets]) == -1)


def test_spatial_question_names_its_objects_in_order():
    samples = [s for s in load_samples("synthetic:split=test,n=24,size=224") if s.qtype in ("left", "above")]
    for sample in samples:
        first, second = relevant_objects(sample.qtype, sample.question, sample.objects)
        named = sample.question.split()
        assert (sample.objects[first]["colour"], sample.objects[first]["shape"]) == (named[2], named[3])
        assert (sample.objects[second]["colour"], sample.objects[second]["shape"]) == (named[-2], named[-1].rstrip("?"))


def test_attention_loss_gives_each_group_its_own_head():
    weights = torch.zeros(1, 2, 5, 5)
    weights[0, 0, 4, 1] = weights[0, 1, 4, 3] = 1.0  # head 0 looks at visual cell 0, head 1 at cell 2
    visual, query = [torch.tensor([1, 2, 3])], torch.tensor([4])
    matched = attention_loss((weights,), query, visual, [[torch.tensor([0]), torch.tensor([2])]], (0,))
    swapped = attention_loss((weights,), query, visual, [[torch.tensor([2]), torch.tensor([0])]], (0,))
    assert matched.item() < 1e-5 and swapped.item() > 10


def test_training_run_saves_a_loadable_model_with_its_report(tmp_path):
    report = train_embedded(
        tmp_path, vision_steps=2, vision_images=2, steps=2, answer_steps=2, answer_images=2, test_n=6, easy_test_n=6,
        val_n=6, eval_every=100, threads=1,
    )  # fmt: skip
    assert (tmp_path / "model.safetensors").stat().st_size <= 20 * 2**20
    saved = json.loads((tmp_path / "training.json").read_text())
    assert saved["settings"]["seed"] == 0 and saved["settings"]["steps"] == 2 and saved["settings"]["answer_steps"] == 2
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [2, 4, 6] and "cell_shape_acc" in log[0]
    assert "cell" in log[1] and "cell" not in log[2] and "val" in log[2]  # the answer stage freezes the vision tower
    assert {"synthetic_test_112", "synthetic_test_224", "synthetic_test_336", "synthetic_test_448", "easy_vqa_test"} <= set(
        report["accuracy"]
    )
    model = AutoModelForImageTextToText.from_pretrained(tmp_path, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert model.config.model_type == "qwen2_vl" and processor.tokenizer.eos_token == "<|im_end|>"
    assert not any("head" in name and "lm_head" not in name for name in model.state_dict())  # auxiliary head not shipped
