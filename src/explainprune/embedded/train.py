"""Train the embedded Qwen2-VL model from scratch on synthetic scenes, synthetic video clips and easy-vqa.

Run: explainprune embedded train --out DIR --seed 0   (every setting of `TrainingConfig` is an option)

What made it learn to look (measured; answer-only training sits at the answer prior): a vision-only first
stage on dense per-cell targets plus each object's shape read from the mean of its cells (per-cell shape
accuracy 0.97 after 800 steps, 8 minutes); then joint training with captions, the cell loss and attention
supervision that sends one head per named object to its tokens (spatial questions stayed at chance until
their two objects had a head each). Video clips get the same losses: each temporal
patch's tokens get the cell targets of its frames, and the attention loss points at the queried object in
the frames the question is about. Clips come in a stage of their own after the image stage (a few scenes per
step keep the image skills): mixed into the image stage from its step 1500, they learned only in its cosine
tail (docs/video.md). Because the vision tower sees each temporal patch alone, a layer-0 head is
taught to look back (`earlier_cells`): each object token at the same object in earlier patches, or at what was
there before it appeared; with it, clips of a fine-tuning probe reached 0.77 against 0.59 without.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm
from transformers.modeling_outputs import BaseModelOutputWithPooling

from explainprune.commands import embedded_train as embedded_train_options
from explainprune.configs import config_from_arguments, load_config, save_config
from explainprune.data import load_samples
from explainprune.data.synthetic import SPATIAL_MARGIN
from explainprune.data.synthetic_video import HOLD, video_focus
from explainprune.embedded.auxiliary import CellHead, attention_loss, earlier_cells, stack_targets, track_attention_loss
from explainprune.embedded.batches import EasyVqaPool, encode_batch, plan_batch, plan_clips, plan_vision_batch
from explainprune.embedded.build import build_model, build_processor
from explainprune.embedded.config import TrainingConfig
from explainprune.embedded.conversations import relevant_objects
from explainprune.embedded.evaluate import evaluate_accuracy
from explainprune.errors import ExplainPruneError

CHECKPOINT = "checkpoint.pt"
CONFIG = "training-config.json"
LOG = "log.jsonl"
REPORT_SIZES = (112, 224, 336, 448)
VIDEO_EVAL = "size=224,frames=8"
EVAL_SEED = 0  # held-out data is the same for every training seed: its splits never meet a train split


def val_specs(config: TrainingConfig) -> dict[str, str]:
    """Validation data: scenes and clips of the val split."""
    specs = {"val": f"synthetic:split=val,seed={EVAL_SEED},n={config.val_n},size=224"}
    if config.video_steps:
        specs["val_video"] = f"synthetic-video:split=val,seed={EVAL_SEED},n={config.val_clips},{VIDEO_EVAL}"
    return specs


def train_embedded(out_dir: str | Path, config: TrainingConfig = TrainingConfig(), threads: int = 2) -> dict:
    """Train in stages (see `TrainingConfig`), resuming from DIR/checkpoint.pt when DIR holds an unfinished
    run of the same config; save model + processor + training.json to DIR. `threads`: torch threads (1 can
    be faster on a busy machine; results do not depend on it beyond float rounding)."""
    started = time.time()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExplainPruneError(f"--out {out_dir} is a file: give a directory for the model")
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_same_run(out_dir, config)
    save_config(config, out_dir / CONFIG)
    torch.set_num_threads(threads)
    if config.precision == "bf16" and not native_bf16():
        tqdm.write(
            f"warning: this CPU has no native bf16 (torch reports {torch.backends.cpu.get_cpu_capability()}): the "
            f"image and video stages run many times slower; --precision fp32 is faster here but trains other weights"
        )
    torch.manual_seed(config.seed)
    processor = build_processor()
    model = build_model(processor)
    head = CellHead(model.config.text_config.hidden_size)
    layers = model.config.text_config.num_hidden_layers
    if max(config.attention_layers) >= layers:
        raise ExplainPruneError(f"--attention-layers must name layers 0-{layers - 1}, got {list(config.attention_layers)}")
    if config.attention_weight or config.track_weight:
        model.set_attn_implementation({"text_config": "eager"})  # attention weights for the attention loss
    vision_params = list(model.model.visual.parameters()) + list(head.parameters())
    vision_ids = {id(p) for p in vision_params}
    optimizer = torch.optim.AdamW(
        [{"params": vision_params}, {"params": [p for p in model.parameters() if id(p) not in vision_ids]}],
        betas=(0.9, 0.98),
        weight_decay=0.01,
    )
    start_step, elapsed_before = 0, 0.0
    checkpoint_path = out_dir / CHECKPOINT
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        model.load_state_dict(state["model"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, elapsed_before = state["step"], state["elapsed"]
        tqdm.write(f"resuming from step {start_step}")
    easy_pool = EasyVqaPool()
    validation = {name: load_samples(spec) for name, spec in val_specs(config).items()}
    model.train()
    total = config.vision_steps + config.steps + config.video_steps
    attention_layers = config.attention_layers if config.attention_weight else ()
    weights = loss_weights(config)
    running: dict[str, float] = {}
    progress = tqdm(range(start_step, total), initial=start_step, total=total, desc="training")
    for step in progress:
        stage, stage_step = stage_of(step, config)
        progress.set_description(f"{stage} stage")
        if stage == "vision":
            _set_lrs(optimizer, [config.vision_lr * lr_factor(stage_step, config.vision_steps), 0.0])
            loss, metrics = _vision_losses(model, head, processor, plan_vision_batch(config.seed, stage_step, config.vision_images))
        else:
            lr, plans = stage_plans(config, stage, stage_step, easy_pool)
            _set_lrs(optimizer, [lr] * 2)
            loss, metrics = joint_loss(model, head, processor, plans, weights, attention_layers, config.precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(head.parameters()), 1.0)
        optimizer.step()
        for name, value in metrics.items():
            running[name] = 0.95 * running.get(name, value) + 0.05 * value
        progress.set_postfix({k: f"{v:.3f}" for k, v in running.items()})
        done = step + 1
        if done % config.eval_every == 0 or done in (config.vision_steps, config.vision_steps + config.steps, total):
            record = {"step": done, "elapsed": round(elapsed_before + time.time() - started), **running}
            if done > config.vision_steps:
                for name, samples in validation.items():
                    if name != "val_video" or done > config.vision_steps + config.steps:
                        record[name] = evaluate_accuracy(model, processor, samples, progress=False)
            tqdm.write(json.dumps(record))
            with open(out_dir / LOG, "a") as log:
                log.write(json.dumps(record) + "\n")
            state = {"model": model.state_dict(), "head": head.state_dict(), "optimizer": optimizer.state_dict()}
            torch.save({**state, "step": done, "elapsed": elapsed_before + time.time() - started}, checkpoint_path)
            if done == config.vision_steps:
                running = {}  # the joint stage logs other losses
    train_seconds = elapsed_before + time.time() - started
    report = {
        "command": command_line(config),
        "config": dataclasses.asdict(config),
        "data": {
            "train": [f"synthetic:split=train,seed={config.seed} (generated per step)", "easy-vqa:train"]
            + ([f"synthetic-video:split=train,seed={config.seed} (generated per step)"] if config.video_steps else []),
            **val_specs(config),
        },
        "train_wall_seconds": round(train_seconds),
        "parameters": sum(p.numel() for p in model.parameters()),
        "accuracy": report_accuracies(model, processor, config),
    }
    report["total_wall_seconds"] = round(time.time() - started + elapsed_before)
    save_model(model, processor, out_dir, report)
    checkpoint_path.unlink()
    return report


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX); without it torch emulates bf16 and an
    image-stage batch measured 17x slower in bf16 than in fp32 (docs/video.md)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def stage_of(step: int, config: TrainingConfig) -> tuple[str, int]:
    """(stage, step within it) of a run's step: "vision", then "image", then "video"."""
    if step < config.vision_steps:
        return "vision", step
    if step < config.vision_steps + config.steps:
        return "image", step - config.vision_steps
    return "video", step - config.vision_steps - config.steps


def stage_plans(config: TrainingConfig, stage: str, stage_step: int, easy_pool: EasyVqaPool) -> tuple[float, dict]:
    """(learning rate, {loss prefix: batch plan}) of an image- or video-stage step. The image stage's first
    `early_margin_steps` ask spatial questions of closer objects and those before `full_mix_from` have the early
    curriculum's captions and question types (both as the shipped image model's run had them); the
    video stage's scenes come after the image stage's, so no scene is drawn twice."""
    if stage == "image":
        warmup = stage_step < int(config.warmup_fraction * config.steps)
        margin = config.early_margin if stage_step < config.early_margin_steps else SPATIAL_MARGIN
        plan = plan_batch(
            config.seed, stage_step, config.synthetic_images, config.easy_images, config.questions_per_image, easy_pool,
            warmup, margin, full_mix=stage_step >= config.full_mix_from,
        )  # fmt: skip
        return image_stage_lr(stage_step, config), {"": plan}
    scene_step = -(-config.steps * config.synthetic_images // config.video_images) + stage_step
    plans = {
        "": plan_batch(
            config.seed, scene_step, config.video_images, config.video_easy_images, config.questions_per_image, easy_pool, False
        ),
        "video_": plan_clips(config.seed, stage_step, config.clips, config.questions_per_clip),
    }  # fmt: skip
    return config.video_lr * lr_factor(stage_step, config.video_steps), plans


def loss_weights(config: TrainingConfig) -> dict[str, float]:
    """The weight of each joint-stage loss part, as `joint_loss` takes them."""
    return {
        "answer": 1.0, "caption": config.caption_weight, "cell": config.aux_weight, "look": config.attention_weight,
        "track": config.track_weight,
    }  # fmt: skip


def command_line(config: TrainingConfig) -> str:
    """The command that reruns `config`: `--out DIR` and the options that differ from the defaults."""
    defaults = TrainingConfig()
    parts = ["explainprune", "embedded", "train", "--out", "DIR", "--seed", str(config.seed)]
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name != "seed" and value != getattr(defaults, field.name):
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            parts += ["--" + field.name.replace("_", "-"), shown]
    return " ".join(shlex.quote(part) for part in parts)


def _check_same_run(out_dir: Path, config: TrainingConfig) -> None:
    """Refuse to resume a run whose saved config differs, or to overwrite a finished model."""
    saved = out_dir / CONFIG
    if (out_dir / "training.json").exists():
        raise ExplainPruneError(f"{out_dir} already holds a trained model (training.json): choose a new --out")
    if saved.exists() and load_config(TrainingConfig, saved) != config:
        raise ExplainPruneError(
            f"{out_dir} holds an unfinished run with other settings ({saved}): resume it with the same options "
            f"or choose a new --out"
        )


def _set_lrs(optimizer: torch.optim.Optimizer, lrs: list[float]) -> None:
    for group, value in zip(optimizer.param_groups, lrs):
        group["lr"] = value


def lr_factor(step: int, steps: int, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def image_stage_lr(step: int, config: TrainingConfig) -> float:
    """The image stage's learning rate: `lr_factor` cycles, a first one of `first_cycle` steps (0: none), a
    second up to `full_mix_from` and a third, peaking at `full_mix_lr`, from there to the end (no third
    cycle when `full_mix_from` is 0)."""
    starts = [0] + [s for s in (config.first_cycle, config.full_mix_from) if 0 < s < config.steps]
    start = max(s for s in starts if s <= step)
    end = min([s for s in starts if s > step] + [config.steps])
    peak = config.full_mix_lr if config.full_mix_from and step >= config.full_mix_from else config.lr
    return peak * lr_factor(step - start, end - start)


def _vision_losses(model, head: CellHead, processor, plan) -> tuple[torch.Tensor, dict[str, float]]:
    """The cell loss of the vision stage and the step's read-out accuracies (measured on the step's fresh
    scenes before the update). Runs in float32: at this width bf16 autocast measured 2x slower here."""
    pixels = processor.image_processor(images=[v.frames[0] for v in plan.visuals], return_tensors="pt")
    tokens = torch.cat(model.model.get_image_features(pixels["pixel_values"], pixels["image_grid_thw"]).pooler_output)
    targets = stack_targets([v.targets[0] for v in plan.visuals])
    loss = head.loss(tokens, targets)
    accuracy = head.accuracy(tokens, targets)
    return loss, {"cell": loss.item(), "cell_colour_acc": accuracy["colour"], "cell_shape_acc": accuracy["shape"]}


def _visual_tokens(model, batch: dict, plan) -> list[torch.Tensor]:
    """The vision tower's merged tokens of each visual of the plan (once per image or clip)."""
    inner = model.model
    features = {"image": iter(()), "video": iter(())}
    if "pixel_values" in batch:
        features["image"] = iter(inner.get_image_features(batch["pixel_values"], batch["image_grid_unique"]).pooler_output)
    if "pixel_values_videos" in batch:
        videos = inner.get_video_features(batch["pixel_values_videos"], batch["video_grid_unique"]).pooler_output
        features["video"] = iter(videos)
    return [next(features[visual.modality]) for visual in plan.visuals]


def joint_forward(model, batch: dict, plan, output_attentions: bool = False):
    """(model output, merged tokens per visual): the model on the plan's questions, the vision tower run
    once per image or clip and its tokens shared by all of that visual's questions."""
    per_visual = _visual_tokens(model, batch, plan)
    outputs = {}
    for modality in ("image", "video"):
        rows = [v for v in plan.visual_of if plan.visuals[v].modality == modality]
        if rows:
            outputs[modality] = BaseModelOutputWithPooling(pooler_output=tuple(per_visual[v] for v in rows))
    output = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        mm_token_type_ids=batch["mm_token_type_ids"],
        image_grid_thw=batch.get("image_grid_thw"),
        video_grid_thw=batch.get("video_grid_thw"),
        mm_encoder_outputs=outputs,
        output_attentions=output_attentions,
    )
    return output, per_visual


def joint_loss(
    model, head: CellHead, processor, plans: dict, weights: dict, attention_layers: tuple[int, ...], precision: str = "bf16"
):
    """(weighted loss, {prefix + part: value}) of one joint step over its plans (images under "", clips under
    "video_"), each batch in bf16 autocast unless `precision` is "fp32"; the look-back loss runs when
    `weights["track"]` is not 0."""
    loss, metrics = 0.0, {}
    for prefix, plan in plans.items():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            parts = _losses(model, head, encode_batch(processor, plan), plan, attention_layers, bool(weights["track"]))
        loss = loss + sum(weights[name] * value for name, value in parts.items())
        metrics |= {prefix + name: value.item() for name, value in parts.items()}
    return loss, metrics


def _losses(
    model, head: CellHead, batch: dict, plan, attention_layers: tuple[int, ...], track: bool = False
) -> dict[str, torch.Tensor]:
    """Answer and caption token cross-entropies, the dense cell loss on the visual tokens of every scene and
    clip, the attention loss pulling supervised heads onto the queried objects' visual tokens and, with
    `track`, the clips' layer-0 look-back loss."""
    output, per_visual = joint_forward(model, batch, plan, bool(attention_layers) or track)
    logits = output.logits
    labels = batch["labels"][:, 1:]
    token_loss = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels, reduction="none", ignore_index=-100)
    is_caption = torch.tensor([q.qtype == "caption" for q in plan.questions])[:, None] & (labels != -100)
    is_answer = ~is_caption & (labels != -100)
    parts = {"answer": (token_loss * is_answer).sum() / is_answer.sum()}
    if is_caption.any():
        parts["caption"] = (token_loss * is_caption).sum() / is_caption.sum()
    labelled = [i for i, visual in enumerate(plan.visuals) if visual.targets is not None]
    targets = stack_targets([target for i in labelled for target in plan.visuals[i].targets])
    parts["cell"] = head.loss(torch.cat([per_visual[i] for i in labelled]), targets)
    parts["look"] = logits.new_zeros((), dtype=torch.float32)
    if attention_layers:
        parts["look"] = _look_loss(output.attentions, batch, plan, attention_layers)
    if track and any(visual.modality == "video" for visual in plan.visuals):
        parts["track"] = _track_loss(output.attentions[0], batch, plan)
    return parts


def _track_loss(layer0: torch.Tensor, batch: dict, plan) -> torch.Tensor:
    """`track_attention_loss` on head 0 of layer 0 for each clip, read on the clip's first question row (the
    visual tokens precede the question, so causal attention among them is the same on every row)."""
    is_visual = batch["mm_token_type_ids"] > 0
    terms = []
    for index, visual in enumerate(plan.visuals):
        if visual.modality != "video":
            continue
        row = plan.visual_of.index(index)
        positions = is_visual[row].nonzero().squeeze(1)
        queries, mask = earlier_cells(visual.targets)
        if len(queries):
            weights = layer0[row, 0][positions][:, positions]
            terms.append(track_attention_loss(weights, queries, mask))
    return torch.stack(terms).mean() if terms else layer0.new_zeros((), dtype=torch.float32)


def relevant_cells(question, targets: list[dict]) -> list[torch.Tensor]:
    """Per supervised head, the visual-token indices (temporal patch-major) of what a question is about:
    a spatial question's two objects get a head each, a direction question the object's start and end."""
    if question.modality == "video":
        heads = [list(dict.fromkeys((frame // HOLD, i) for frame, i in head)) for head in video_focus(
            question.qtype, question.question, question.objects
        )]  # fmt: skip
    else:
        objects = relevant_objects(question.qtype, question.question, question.objects)
        heads = [[(0, i)] for i in objects] if question.qtype in ("left", "above") else [[(0, i) for i in objects]]
    cells = targets[0]["object"].numel()
    return [
        torch.cat([(targets[g]["object"] == i).nonzero().flatten() + g * cells for g, i in head])
        if head
        else torch.zeros(0, dtype=torch.long)
        for head in heads
    ]


def _look_loss(attentions, batch: dict, plan, attention_layers: tuple[int, ...]) -> torch.Tensor:
    """`attention_loss` for the synthetic questions (captions and easy-vqa questions are not supervised)."""
    is_visual = batch["mm_token_type_ids"] > 0
    query_positions = (batch["labels"] != -100).int().argmax(dim=1) - 1
    visual_positions, cells = [], []
    for row, question in enumerate(plan.questions):
        visual_positions.append(is_visual[row].nonzero().squeeze(1))
        targets = plan.visuals[plan.visual_of[row]].targets
        supervised = targets is not None and question.qtype != "caption"
        cells.append(relevant_cells(question, targets) if supervised else [])
    return attention_loss(attentions, query_positions, visual_positions, cells, attention_layers)


def report_accuracies(model, processor, config: TrainingConfig) -> dict:
    """Held-out test accuracy (the same data for every seed): synthetic scenes per resolution, synthetic
    clips, and easy-vqa."""
    specs = {f"synthetic_test_{size}": f"synthetic:split=test,seed={EVAL_SEED},n={config.test_n},size={size}" for size in REPORT_SIZES}
    if config.video_steps:
        specs["synthetic_video_test"] = f"synthetic-video:split=test,seed={EVAL_SEED},n={config.test_clips},{VIDEO_EVAL}"
    specs["easy_vqa_test"] = "easy-vqa:test" + (f",n={config.easy_test_n}" if config.easy_test_n else "")
    accuracies = {}
    for name, spec in specs.items():
        accuracies[name] = {"spec": spec, **evaluate_accuracy(model, processor, load_samples(spec))}
        tqdm.write(f"{spec}: {accuracies[name]}")
    return accuracies


def save_model(model, processor, out_dir: Path, report: dict) -> None:
    """Save the Qwen2-VL model in bf16 (no auxiliary head), the processor and training.json."""
    model.set_attn_implementation("sdpa")
    model.to(torch.bfloat16).save_pretrained(out_dir)
    model.to(torch.float32)
    processor.save_pretrained(out_dir)
    (out_dir / "training.json").write_text(json.dumps(report, indent=2) + "\n")


def main(args: argparse.Namespace) -> None:
    """Run training from parsed arguments and print the accuracies."""
    report = train_embedded(args.out, config_from_arguments(TrainingConfig, args), args.threads)
    print(json.dumps(report["accuracy"], indent=2))


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    embedded_train_options.add_arguments(cli)
    main(cli.parse_args())
