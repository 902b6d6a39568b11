"""Where a step of `explainprune embedded train` spends its time: draws, forward and backward of the
recipe's own batches (`plan_vision_batch`, `plan_batch`, `plan_clips`, `joint_loss`), timed one by one
at each thread count, on a model built from the recipe's config (the speed does not depend on the weights).
Run it on an idle machine; it prints one table (mean seconds per step over `--steps` steps after
`--warmup`) and the load average.

    python scripts/step_timing.py --threads 1,2 --steps 8
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from explainprune.embedded.auxiliary import CellHead
from explainprune.embedded.batches import EasyVqaPool, plan_batch, plan_clips, plan_vision_batch
from explainprune.embedded.build import build_model, build_processor
from explainprune.embedded.config import TrainingConfig
from explainprune.embedded.train import _vision_losses, joint_loss, loss_weights


def timed(function):
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def measure(processor, threads: int, steps: int, warmup: int, precision: str) -> dict[str, float]:
    """Mean seconds per step of each part at `threads` intra-op threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = TrainingConfig()
    model = build_model(processor)
    model.set_attn_implementation({"text_config": "eager"})
    model.train()
    head = CellHead(model.config.text_config.hidden_size)
    pool = EasyVqaPool()
    weights = loss_weights(config)
    totals: dict[str, float] = {}
    for step in range(warmup + steps):
        joint_step = config.first_cycle + step
        vision_plan, draw_vision = timed(lambda: plan_vision_batch(config.seed, step, config.vision_images))
        image_plan, draw_images = timed(lambda: plan_batch(
            config.seed, joint_step, config.synthetic_images, config.easy_images, config.questions_per_image, pool, False))
        scenes_plan, draw_scenes = timed(lambda: plan_batch(
            config.seed, joint_step, config.video_images, config.video_easy_images, config.questions_per_image, pool, False))
        clip_plan, draw_clips = timed(lambda: plan_clips(config.seed, joint_step, config.clips, config.questions_per_clip))
        parts = {"draw: vision batch": draw_vision, "draw: image batch": draw_images, "draw: clips": draw_clips,
                 "draw: video-stage scenes": draw_scenes}
        for name, run in (
            ("vision stage batch", lambda: _vision_losses(model, head, processor, vision_plan)[0]),
            ("image-stage batch", lambda: joint_loss(model, head, processor, {"": image_plan}, weights, config.attention_layers, precision)[0]),
            ("video-stage scenes", lambda: joint_loss(model, head, processor, {"": scenes_plan}, weights, config.attention_layers, precision)[0]),
            ("clip batch", lambda: joint_loss(model, head, processor, {"video_": clip_plan}, weights, config.attention_layers, precision)[0]),
        ):
            loss, forward = timed(run)
            _, backward = timed(loss.backward)
            model.zero_grad(set_to_none=True)
            parts[f"{name}: forward"], parts[f"{name}: backward"] = forward, backward
        if step >= warmup:
            for name, seconds in parts.items():
                totals[name] = totals.get(name, 0.0) + seconds / steps
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="the joint batches' autocast")
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    processor = build_processor()
    load_before = os.getloadavg()[0]
    results = {threads: measure(processor, threads, args.steps, args.warmup, args.precision) for threads in counts}
    names = list(next(iter(results.values())))
    print(f"| part (s per step, mean of {args.steps}) | " + " | ".join(f"{t} thread{'s' * (t > 1)}" for t in counts) + " |")
    print("|---|" + "---:|" * len(counts))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{results[t][name]:.3f}" for t in counts) + " |")
    print(f"load average (1 min) before {load_before:.2f}, after {os.getloadavg()[0]:.2f}; torch {torch.__version__}, "
          f"{args.precision}, CPU capability {torch.backends.cpu.get_cpu_capability()}")


if __name__ == "__main__":
    main()
