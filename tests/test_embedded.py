"""The embedded model's recipe: model/processor construction, targets and losses, a short training run
that saves a directory the Auto classes load (the shipped model itself: test_embedded_model.py)."""

import argparse
import dataclasses
import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

import explainprune.embedded as embedded
from explainprune.data import load_samples, make_inputs
from explainprune.embedded.auxiliary import attention_loss, cell_targets, earlier_cells, stack_targets, track_attention_loss
from explainprune.embedded.build import build_model, build_processor
from explainprune.embedded.conversations import CAPTION_QUESTIONS, EVEN_WEIGHTS, LEANING_WEIGHTS, extra_question, relevant_objects
from explainprune.cli import main as cli_main
from explainprune.configs import config_from_arguments, load_config, save_config
from explainprune.data.synthetic import generate_sample, spatial_question
from explainprune.data.synthetic_video import frame_objects
from explainprune.embedded.batches import BatchPlan, EasyVqaPool, Visual, encode_batch, plan_clips
from explainprune.embedded.config import TrainingConfig
from explainprune.commands.embedded_train import add_arguments
from explainprune.embedded.auxiliary import CellHead
from explainprune.embedded.train import (
    command_line, image_stage_lr, joint_forward, joint_loss, loss_weights, lr_factor, relevant_cells, stage_of,
    stage_plans, train_embedded,
)
from explainprune.errors import ExplainPruneError


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


def test_spatial_questions_keep_their_margin():
    """Two objects 0.15 of the side apart: too close for the test data's margin, a pair at 0.12."""
    objects = [
        {"colour": "red", "shape": "circle", "bbox": (10, 50, 30, 70)},
        {"colour": "blue", "shape": "square", "bbox": (44, 50, 64, 70)},  # centres 34 px = 0.15 of 224 apart
    ]
    rng = np.random.default_rng(0)
    assert spatial_question(rng, objects, "left", True, 224) is None
    assert spatial_question(rng, objects, "left", True, 224, margin=0.12) == ("is the red circle left of the blue square?", "yes")
    assert spatial_question(rng, objects, "left", False, 224, margin=0.12) == ("is the blue square left of the red circle?", "no")
    assert spatial_question(rng, objects, "above", True, 224, margin=0.12) is None  # same height


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


def test_attention_loss_and_its_gradient_equal_the_per_term_reference():
    generator = torch.Generator().manual_seed(0)
    layers = [torch.rand(3, 2, 9, 9, generator=generator).softmax(-1).requires_grad_() for _ in range(2)]
    query = torch.tensor([8, 7, 8])
    visual = [torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1, 2, 3]), torch.tensor([2, 3, 4, 5])]
    cells = [[torch.tensor([0, 1]), torch.tensor([3])], [torch.tensor([2])], [torch.zeros(0, dtype=torch.long), torch.tensor([1, 2])]]
    loss = attention_loss(tuple(layers), query, visual, cells, (0, 1))
    reference = torch.stack([
        -torch.log(layers[layer][row, head, query[row]][visual[row][group]].sum() + 1e-6)
        for row in range(3) for head, group in enumerate(cells[row]) if group.numel() for layer in (0, 1)
    ]).mean()  # fmt: skip
    assert torch.allclose(loss, reference)
    gradients = torch.autograd.grad(loss, layers)
    expected = torch.autograd.grad(reference, layers)
    assert all(torch.allclose(g, e) for g, e in zip(gradients, expected))


def test_earlier_cells_look_back_at_the_same_object_or_what_it_replaced():
    # three temporal patches of 4 cells: object 0 static at cell 0, object 1 moves 1 -> 2 -> 3, object 2
    # appears in the last patch at cell 2 (background there before: object 1 had moved on to cell 3)
    patches = [[0, 1, -1, -1], [0, -1, 1, -1], [0, -1, 2, 1]]
    queries, mask = earlier_cells([{"object": torch.tensor(p)} for p in patches])
    expected = {4: [0], 6: [1], 8: [0, 4], 10: [6], 11: [1, 6]}  # token -> cells it must look back at
    assert queries.tolist() == list(expected)
    assert [row.nonzero().flatten().tolist() for row in mask] == list(expected.values())
    attention = torch.zeros(12, 12)
    for token, cells in expected.items():
        attention[token, cells] = 1 / len(cells)
    assert track_attention_loss(attention, queries, mask).item() < 1e-5
    attention[10] = 0
    attention[10, 9] = 1.0  # the new object looks at the wrong cell
    assert track_attention_loss(attention, queries, mask).item() > 2


SMALL = TrainingConfig(
    vision_steps=2, vision_images=2, steps=2, first_cycle=0, video_steps=2, clips=1, questions_per_clip=2,
    synthetic_images=2, easy_images=1, video_images=1, video_easy_images=1, eval_every=100, val_n=2, val_clips=2, test_n=2, test_clips=2, easy_test_n=2,
)  # fmt: skip


def test_training_run_saves_a_loadable_model_with_its_report(tmp_path):
    report = train_embedded(tmp_path, SMALL, threads=1)
    assert (tmp_path / "model.safetensors").stat().st_size <= 20 * 2**20
    saved = json.loads((tmp_path / "training.json").read_text())
    assert saved["config"] == dataclasses.asdict(SMALL) | {"attention_layers": [1, 2]}
    assert load_config(TrainingConfig, tmp_path / "training-config.json") == SMALL  # saved verbatim
    assert saved["command"].startswith("explainprune embedded train --out DIR --seed 0 --vision-steps 2")
    assert str(tmp_path) not in (tmp_path / "training.json").read_text()  # no machine paths
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [2, 4, 6] and "cell_shape_acc" in log[0]
    assert "val" in log[1] and "val_video" not in log[1] and "video_answer" not in log[1]  # the image stage
    assert {"answer", "cell", "look", "video_answer", "video_cell", "video_look", "video_track", "val", "val_video"} <= set(log[2])
    assert {"synthetic_test_112", "synthetic_test_448", "synthetic_video_test", "easy_vqa_test"} <= set(report["accuracy"])
    model = AutoModelForImageTextToText.from_pretrained(tmp_path, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert model.config.model_type == "qwen2_vl" and processor.tokenizer.eos_token == "<|im_end|>"
    assert not any("head" in name and "lm_head" not in name for name in model.state_dict())  # auxiliary head not shipped
    assert not (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(ExplainPruneError, match="already holds a trained model"):
        train_embedded(tmp_path, SMALL)


def test_stages_follow_each_other_and_never_repeat_a_scene():
    config = dataclasses.replace(SMALL, vision_steps=2, steps=3, video_steps=2, synthetic_images=3, video_images=2)
    assert [stage_of(step, config) for step in range(7)] == [
        ("vision", 0), ("vision", 1), ("image", 0), ("image", 1), ("image", 2), ("video", 0), ("video", 1)
    ]  # fmt: skip
    pool = EasyVqaPool()
    scenes = {stage: [] for stage in ("image", "video")}
    for stage, steps in (("image", config.steps), ("video", config.video_steps)):
        for step in range(steps):
            _, plans = stage_plans(config, stage, step, pool)
            assert set(plans) == ({"", "video_"} if stage == "video" else {""})
            scenes[stage] += [q.id for q in plans[""].questions if q.id.startswith("synthetic")]
    assert len(set(scenes["image"])) == 9 and len(set(scenes["video"])) == 4
    assert not set(scenes["image"]) & set(scenes["video"])


def test_early_image_steps_ask_spatial_questions_of_closer_objects():
    config = dataclasses.replace(TrainingConfig(), early_margin=0.12, early_margin_steps=6, warmup_fraction=0)
    pool = EasyVqaPool()

    def offsets(steps):
        found = []
        for step in steps:
            _, plans = stage_plans(config, "image", step, pool)
            for q in plans[""].questions:  # each scene's own question keeps margin 0.25, its extra ones vary
                if q.qtype in ("left", "above"):
                    first, second = (q.objects[i] for i in relevant_objects(q.qtype, q.question, q.objects))
                    axis = 0 if q.qtype == "left" else 1
                    gap = abs(sum(second["bbox"][axis::2]) - sum(first["bbox"][axis::2])) / 2
                    found.append(gap / q.image.size[0])
        return np.array(found)

    early, late = offsets(range(6)), offsets(range(6, 12))
    assert (early >= 0.12 - 1e-9).all() and (early < 0.25).any()
    assert (late >= 0.25 - 1e-9).all()
    with pytest.raises(ExplainPruneError, match="--early-margin must be between 0 and 1"):
        TrainingConfig(early_margin=1.5)


def test_the_curriculum_switches_captions_question_types_and_learning_rate_cycle_at_full_mix_from():
    config = dataclasses.replace(TrainingConfig(), steps=40, first_cycle=10, full_mix_from=20, warmup_fraction=0)
    pool = EasyVqaPool()

    def questions(steps):
        found = []
        for step in steps:
            _, plans = stage_plans(config, "image", step, pool)
            found += [q for q in plans[""].questions if q.id.startswith("synthetic")]
        return found

    early, late = questions(range(14, 20)), questions(range(20, 26))
    assert {q.question for q in early if q.qtype == "caption"} == {"list the objects from left to right."}
    assert {q.question for q in late if q.qtype == "caption"} == set(CAPTION_QUESTIONS)
    # the scenes do not change with the curriculum
    plain = dataclasses.replace(config, full_mix_from=0)
    assert [q.id for q in early if q.qtype == "caption"] == [
        q.id for step in range(14, 20) for q in stage_plans(plain, "image", step, pool)[1][""].questions if q.qtype == "caption"
    ]
    # extra questions: every type equally often before the switch, left/above twice and count 1.5x as often
    # as colour after it (types that do not fit the scene give None, so compare shares between the two)
    objects = generate_sample("train", 0, 3, [224], 4, 4).objects
    shares = {}
    for name, weights in (("even", EVEN_WEIGHTS), ("leaning", LEANING_WEIGHTS)):
        rng = np.random.default_rng(0)
        types = [d[0] if d else None for d in (extra_question(rng, objects, 224, type_weights=weights) for _ in range(6000))]
        shares[name] = {t: types.count(t) / len(types) for t in ("colour", "left", "above", "count")}
    for qtype, ratio in (("left", 2 * 6 / 8.5), ("above", 2 * 6 / 8.5), ("count", 1.5 * 6 / 8.5), ("colour", 6 / 8.5)):
        if shares["even"][qtype] > 0.02:
            assert shares["leaning"][qtype] / shares["even"][qtype] == pytest.approx(ratio, rel=0.15), qtype
    # the learning rate: cycles restart at first_cycle and full_mix_from, the last one at its own peak
    lrs = [image_stage_lr(step, config) for step in range(40)]
    assert lrs[:10] == [config.lr * lr_factor(s, 10) for s in range(10)]
    assert lrs[10:20] == [config.lr * lr_factor(s, 10) for s in range(10)]
    assert lrs[20:] == [config.full_mix_lr * lr_factor(s, 20) for s in range(20)]
    assert [image_stage_lr(s, plain) for s in range(40)][20:] == [config.lr * lr_factor(s, 30) for s in range(10, 30)]
    with pytest.raises(ExplainPruneError, match="--full-mix-from must fall after --first-cycle"):
        dataclasses.replace(config, full_mix_from=5)


def test_a_run_resumes_only_with_its_own_settings(tmp_path):
    save_config(SMALL, tmp_path / "training-config.json")
    with pytest.raises(ExplainPruneError, match="unfinished run with other settings"):
        train_embedded(tmp_path, dataclasses.replace(SMALL, seed=1))


def test_command_line_options_fill_the_config(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--out", "run", "--seed", "3", "--attention-layers", "0,3", "--lr", "2e-3"])
    config = config_from_arguments(TrainingConfig, args)
    assert config == dataclasses.replace(TrainingConfig(), seed=3, attention_layers=(0, 3), lr=2e-3)
    assert command_line(config) == "explainprune embedded train --out DIR --seed 3 --lr 0.002 --attention-layers 0,3"
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "run", "--lr", "nan"])
    assert "argument --lr: expected a finite number > 0, got 'nan'" in capsys.readouterr().err


def test_fp32_precision_computes_the_joint_loss_without_bf16_autocast(built):
    """The same step's loss in fp32 and in bf16 autocast: close (same model, same batch) but not equal, so
    the option changes the arithmetic and nothing else."""
    model, processor = built
    model.set_attn_implementation({"text_config": "eager"})
    head = CellHead(model.config.text_config.hidden_size)
    _, plans = stage_plans(SMALL, "image", 0, EasyVqaPool())
    weights = loss_weights(SMALL)
    try:
        with torch.no_grad():
            losses = {p: joint_loss(model, head, processor, plans, weights, (1, 2), p)[0].item() for p in ("fp32", "bf16")}
            losses["fp32 again"] = joint_loss(model, head, processor, plans, weights, (1, 2), "fp32")[0].item()
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    assert losses["fp32"] == losses["fp32 again"]
    assert 0 < abs(losses["bf16"] - losses["fp32"]) < 0.05 * losses["fp32"]


def test_training_batches_match_the_processor(built):
    """The training path (pixels once per image or clip, tokens shared by its questions) gives the logits
    of the plain processor path with one image or clip per question."""
    model, processor = built
    scene = load_samples("synthetic:split=train,n=1,size=112")[0]
    clip = load_samples("synthetic-video:split=train,n=1,size=112,frames=4")[0]
    plan = BatchPlan()
    plan.add(Visual("image", [scene.image], None), [scene, dataclasses.replace(scene, question="list the objects from left to right.")])
    plan.add(Visual("video", clip.video, None), [clip, dataclasses.replace(clip, question="which shape moves?")])
    batch = encode_batch(processor, plan)
    with torch.no_grad():
        logits = joint_forward(model, batch, plan)[0].logits
        reference = model(**make_inputs(processor, plan.questions, [q.answer for q in plan.questions])).logits
    torch.testing.assert_close(logits, reference, atol=1e-4, rtol=1e-4)


def test_clip_batches_carry_targets_per_temporal_patch():
    plan = plan_clips(seed=0, step=5, clips=2, questions_per_clip=3)
    again = plan_clips(seed=0, step=5, clips=2, questions_per_clip=3)
    assert [(q.question, q.answer) for q in plan.questions] == [(q.question, q.answer) for q in again.questions]
    for visual in plan.visuals:
        assert visual.modality == "video" and len(visual.targets) == len(visual.frames) // 2
    for question in plan.questions:
        video = question.video
        assert question.modality == "video" and any(video is v.frames for v in plan.visuals)


def test_video_questions_point_at_their_frames():
    """The attention targets of a clip question are the queried object's tokens in the right temporal patches."""
    clips = load_samples("synthetic-video:split=val,seed=0,n=20,size=224,frames=8")
    for clip in clips:
        targets = [cell_targets(frame_objects(clip, f), clip.mask[f]) for f in range(0, 8, 2)]
        heads = relevant_cells(clip, targets)
        cells = targets[0]["object"].numel()
        patches = [sorted(set((h // cells).tolist())) for h in heads]
        objects = torch.cat([t["object"] for t in targets])
        assert all(h.numel() for h in heads) and all(len(set(objects[h].tolist())) == 1 for h in heads)
        if clip.qtype == "colour_end":
            assert patches == [[3]]
        if clip.qtype == "direction":
            assert len(heads) == 2 and patches[0] < patches[1]
        if clip.qtype == "frames":
            assert 2 * len(patches[0]) == int(clip.answer)


@pytest.mark.slow
def test_the_same_seed_trains_the_same_weights(tmp_path):
    """Everything follows from the seed: two runs of one config end with equal weights, another seed not."""
    config = dataclasses.replace(SMALL, vision_steps=1, steps=1, video_steps=1)
    weights = {}
    for name, seed in (("first", 0), ("again", 0), ("other", 1)):
        train_embedded(tmp_path / name, dataclasses.replace(config, seed=seed), threads=1)
        weights[name] = AutoModelForImageTextToText.from_pretrained(tmp_path / name).state_dict()
    assert all(torch.equal(weights["first"][key], weights["again"][key]) for key in weights["first"])
    assert not torch.equal(weights["first"]["lm_head.weight"], weights["other"]["lm_head.weight"])


@pytest.mark.parametrize(
    ("options", "message"),
    [({"steps": -1}, "--steps must be an integer >= 0, got -1"), ({"lr": float("inf")}, "--lr must be a finite number > 0"),
     ({"val_n": 0}, "--val-n must be an integer >= 1"), ({"clips": 0}, "--clips must be an integer >= 1"),
     ({"attention_layers": (-1,)}, "--attention-layers must be comma-separated values, each an integer >= 0"),
     ({"attention_layers": ()}, "--attention-layers must be"), ({"seed": True}, "--seed must be"),
     ({"warmup_fraction": 1.5}, "--warmup-fraction must be at most 1")],
)  # fmt: skip
def test_bad_settings_are_refused_by_name(options, message):
    with pytest.raises(ExplainPruneError, match=message):
        TrainingConfig(**options)


def test_the_cli_refuses_bad_settings_in_one_line(tmp_path, capsys):
    assert cli_main(["embedded", "train", "--out", str(tmp_path / "run"), "--attention-layers", "1,x"]) == 2
    err = capsys.readouterr().err
    assert err == "explainprune embedded train: error: argument --attention-layers: expected an integer >= 0, got 'x'\n"
    assert not (tmp_path / "run").exists()
