"""Training batches: scenes with cell targets for the vision stage; a few images per step with several
teacher-forced questions each for the joint stage.

Every step draws one resolution so sequences pad little; the vision tower runs once per image and its
tokens are shared by all the image's questions. Each step is a pure function of (seed, step).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import easy_vqa
import numpy as np
import torch
from PIL import Image

from explainprune.data import Sample
from explainprune.data.prompting import prompt_texts
from explainprune.data.synthetic import generate_sample
from explainprune.embedded.auxiliary import cell_targets
from explainprune.embedded.conversations import CAPTION_QUESTIONS, caption_text, extra_question

SIZES = [112, 168, 224, 280]
SIZE_WEIGHTS = [0.2, 0.35, 0.4, 0.05]
WARMUP_SIZES = [112, 168, 224]
VISION_SIZES = [168, 224, 280]
VISION_INDEX_OFFSET = 10**8  # vision-stage scenes: train indices the joint stage never reaches


@dataclass
class BatchPlan:
    """Images and questions of one step; `image_of[j]` is the image index of question j."""

    images: list[Image.Image]
    targets: list[dict | None]
    questions: list[Sample]
    image_of: list[int]


class EasyVqaPool:
    """easy-vqa training questions grouped by image, with the raw 64x64 images in memory."""

    def __init__(self):
        questions, answers, image_ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
        self.questions: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for question, answer, image_id in zip(questions, answers, image_ids):
            self.questions[image_id].append((question, answer))
        self.image_ids = sorted(self.questions)
        self.images = {}
        for image_id in self.image_ids:
            with Image.open(paths[image_id]) as raw:
                self.images[image_id] = raw.convert("RGB")


def plan_vision_batch(seed: int, step: int, images: int) -> BatchPlan:
    """The vision stage's step: scenes of one resolution with their cell targets, no questions."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, step, 98]))
    size = int(rng.choice(VISION_SIZES))
    plan = BatchPlan([], [], [], [])
    for k in range(images):
        sample = generate_sample("train", seed, VISION_INDEX_OFFSET + step * images + k, [size])
        plan.images.append(sample.image)
        plan.targets.append(cell_targets(sample.objects, sample.mask))
    return plan


def plan_batch(
    seed: int,
    step: int,
    synthetic_images: int,
    easy_images: int,
    questions_per_image: int,
    easy_pool: EasyVqaPool,
    warmup: bool,
) -> BatchPlan:
    """The step's images (one shared resolution) with their questions, captions and cell targets."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, step, 99]))
    size = int(rng.choice(WARMUP_SIZES)) if warmup else int(rng.choice(SIZES, p=SIZE_WEIGHTS))
    max_objects = 3 if warmup else 5
    plan = BatchPlan([], [], [], [])
    for k in range(synthetic_images):
        sample = generate_sample("train", seed, step * synthetic_images + k, [size], 1 if warmup else 2, max_objects)
        image_index = len(plan.images)
        plan.images.append(sample.image)
        plan.targets.append(cell_targets(sample.objects, sample.mask))
        asked = {sample.question}
        plan.questions.append(sample)
        for _ in range(4 * questions_per_image):
            if len(asked) >= questions_per_image:
                break
            extra = extra_question(rng, sample.objects, size)
            if extra is not None and extra[1] not in asked:
                asked.add(extra[1])
                plan.questions.append(Sample(sample.id, sample.image, extra[1], extra[2], extra[0], sample.objects))
        axis = int(rng.integers(2))
        caption = caption_text(sample.objects, axis)
        caption = Sample(sample.id, sample.image, CAPTION_QUESTIONS[axis], caption, "caption", sample.objects)
        plan.questions.append(caption)
        plan.image_of += [image_index] * (len(plan.questions) - len(plan.image_of))
    for image_id in rng.choice(easy_pool.image_ids, size=easy_images, replace=False):
        image = easy_pool.images[int(image_id)].resize((size, size), Image.Resampling.BICUBIC)
        image_index = len(plan.images)
        plan.images.append(image)
        plan.targets.append(None)
        pool = easy_pool.questions[int(image_id)]
        for q in rng.choice(len(pool), size=min(2, len(pool)), replace=False):
            question, answer = pool[int(q)]
            plan.questions.append(Sample(f"easy-{image_id}", image, question, answer, "easy"))
            plan.image_of.append(image_index)
    return plan


def encode_batch(processor, plan: BatchPlan) -> dict:
    """Model inputs for the plan: per-question text tensors, per-image pixels, answer-only labels."""
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    answers = [q.answer for q in plan.questions]
    texts = prompt_texts(processor, plan.questions, answers)
    pixels = processor.image_processor(images=plan.images, return_tensors="pt")
    grid = pixels["image_grid_thw"]
    tokens_per_image = (grid.prod(-1) // processor.image_processor.merge_size**2).tolist()
    image_pad = processor.image_token
    texts = [t.replace(image_pad, image_pad * tokens_per_image[i]) for t, i in zip(texts, plan.image_of)]
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    input_ids = encoded["input_ids"]
    labels = torch.full_like(input_ids, -100)
    for row, answer in enumerate(answers):
        length = len(tokenizer(answer)["input_ids"]) + 1  # the answer and the end-of-turn token
        labels[row, -length:] = input_ids[row, -length:]
    return {
        "input_ids": input_ids,
        "attention_mask": encoded["attention_mask"],
        "mm_token_type_ids": (input_ids == processor.image_token_id).long(),
        "image_grid_thw": grid[plan.image_of],
        "labels": labels,
        "pixel_values": pixels["pixel_values"],
        "image_grid_thw_unique": grid,
    }
