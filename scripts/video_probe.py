"""A quick probe of the embedded recipe's losses: fine-tune a trained embedded model (default: the shipped,
image-only one; `--model DIR` a run of `explainprune embedded train`) on clips and scenes (`--clips 0`: scenes
only), and print validation accuracy per question type.

Not a way to make a shipped model (that is `explainprune embedded train`, from scratch): it answers, in
minutes instead of hours, whether a change to the clip losses makes a question type learnable. The batches
are the recipe's own (`plan_batch`, `plan_clips`, `joint_loss`); the processor is the recipe's with the shipped
model's tokenizer (its byte-level BPE spells the video words it was never trained on).

    python scripts/video_probe.py --track-weight 1 --steps 900 --out runs/probe-track.jsonl
    python scripts/video_probe.py --model runs/staged-s0 --scenes 8 --easy 2 --lr 5e-4 --steps 1200 --out runs/tail.jsonl

`--position-weight W` adds a probe-only loss: a LayerNorm + linear head reads both asked objects' centres (x, y of each,
fractions of the side) from decoder layer `--position-layer`'s output on each left/above question's answer
row (mean squared error), so the row must carry the two positions the comparison needs.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLProcessor

from explainprune.data import load_samples
from explainprune.data.synthetic import SPATIAL_MARGIN, centre
from explainprune.embedded import EMBEDDED_DIR
from explainprune.embedded.auxiliary import CellHead
from explainprune.embedded.batches import EasyVqaPool, encode_batch, plan_batch, plan_clips
from explainprune.embedded.conversations import relevant_objects
from explainprune.embedded.build import build_processor
from explainprune.embedded.evaluate import evaluate_accuracy
from explainprune.embedded.config import TrainingConfig
from explainprune.embedded.train import joint_loss, loss_weights
from explainprune.tokenizer import QWEN_CHAT_TEMPLATE

SCENE_OFFSET = 50_000  # train scenes beyond those a recipe run draws


def position_loss(hidden: torch.Tensor, batch: dict, plan, head: torch.nn.Module) -> torch.Tensor | None:
    """Mean squared error of `head` reading the two asked objects' centres from each spatial question's
    answer row of `hidden` (the captured layer output), or None when the plan has no spatial question."""
    query = (batch["labels"] != -100).int().argmax(dim=1) - 1
    rows, targets = [], []
    for row, question in enumerate(plan.questions):
        if question.qtype not in ("left", "above"):
            continue
        size = question.image.size[0]
        first, second = (question.objects[i] for i in relevant_objects(question.qtype, question.question, question.objects))
        centres = [value / size for obj in (first, second) for value in centre(obj)]
        rows.append(row)
        targets.append(centres)
    if not rows:
        return None
    rows = torch.tensor(rows)
    predicted = head(hidden[rows, query[rows]].float())
    return torch.nn.functional.mse_loss(predicted, torch.tensor(targets))


def main(args: argparse.Namespace) -> None:
    if args.position_weight and args.clips:
        raise SystemExit("video_probe.py: error: --position-weight reads the image batch's forward: give --clips 0")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    built = build_processor()
    processor = Qwen2VLProcessor(
        image_processor=built.image_processor,
        video_processor=built.video_processor,
        tokenizer=AutoTokenizer.from_pretrained(args.model),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32)
    model.set_attn_implementation({"text_config": "eager"})
    head = CellHead(model.config.text_config.hidden_size)
    hidden_size = model.config.text_config.hidden_size
    position_head = torch.nn.Sequential(torch.nn.LayerNorm(hidden_size), torch.nn.Linear(hidden_size, 4))
    captured = {}
    model.model.language_model.layers[args.position_layer].register_forward_hook(
        lambda module, inputs, output: captured.__setitem__("hidden", output[0] if isinstance(output, tuple) else output)
    )
    parameters = list(model.parameters()) + list(head.parameters()) + list(position_head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    pool = EasyVqaPool()
    val_clips = load_samples("synthetic-video:split=val,seed=0,n=100,size=224,frames=8")
    val_images = load_samples(f"synthetic:split=val,seed=0,n={args.val_n},size=224")
    weights = loss_weights(TrainingConfig(track_weight=args.track_weight))
    running: dict[str, float] = {}
    started = time.time()
    model.train()
    with open(args.out, "w") as log:
        for step in range(args.steps):
            warmup = min(1.0, (step + 1) / 50)
            for group in optimizer.param_groups:
                group["lr"] = args.lr * warmup * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
            plans = {"": plan_batch(0, SCENE_OFFSET + step, args.scenes, args.easy, 4, pool, False, args.spatial_margin)}
            if args.clips:
                plans["video_"] = plan_clips(0, step, args.clips, 4)
            loss, metrics = joint_loss(model, head, processor, plans, weights, (1, 2))
            if args.position_weight:  # the hook holds the last forward's layer output: the image batch needs clips 0
                extra = position_loss(captured["hidden"], encode_batch(processor, plans[""]), plans[""], position_head)
                if extra is not None:
                    loss = loss + args.position_weight * extra
                    metrics["position"] = extra.item()
            for name, value in metrics.items():
                running[name] = 0.9 * running.get(name, value) + 0.1 * value
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            if (step + 1) % args.eval_every == 0:
                clips = evaluate_accuracy(model, processor, val_clips, progress=False)
                images = evaluate_accuracy(model, processor, val_images, progress=False)
                record = {
                    "step": step + 1, "seconds": round(time.time() - started), "val_images": images["accuracy"],
                    "val_clips": clips["accuracy"], "per_qtype": clips["per_qtype"], "images_per_qtype": images["per_qtype"],
                    **{name: round(value, 3) for name, value in running.items()},
                }  # fmt: skip
                print(json.dumps(record), flush=True)
                log.write(json.dumps(record) + "\n")
                log.flush()
    if args.save:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--track-weight", type=float, default=1.0, help="weight of the layer-0 look-back loss (0: off)")
    cli.add_argument("--steps", type=int, default=900)
    cli.add_argument("--model", default=str(EMBEDDED_DIR), help="model directory (default: the shipped embedded model)")
    cli.add_argument("--clips", type=int, default=3, help="clips per step (4 questions each; 0: scenes only)")
    cli.add_argument("--scenes", type=int, default=4, help="synthetic scenes per step (4 questions + a caption each)")
    cli.add_argument("--easy", type=int, default=1, help="easy-vqa images per step")
    cli.add_argument("--val-n", type=int, default=60, help="validation scenes")
    cli.add_argument("--spatial-margin", type=float, default=SPATIAL_MARGIN,
                     help="extra left/above questions: least centre offset, share of the side (test data: 0.25)")
    cli.add_argument("--position-weight", type=float, default=0.0,
                     help="weight of the probe's position read-out on spatial answer rows (0: off; needs --clips 0)")
    cli.add_argument("--position-layer", type=int, default=2, help="decoder layer whose output the read-out reads")
    cli.add_argument("--lr", type=float, default=1e-3)
    cli.add_argument("--eval-every", type=int, default=150)
    cli.add_argument("--threads", type=int, default=1)
    cli.add_argument("--save", help="directory to save the fine-tuned model in (e.g. for scripts/spatial_errors.py)")
    cli.add_argument("--out", required=True, help="JSON-lines log of the validation rounds")
    main(cli.parse_args())
