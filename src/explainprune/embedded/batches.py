"""Training batches: scenes with cell targets for the vision stage; a few images (and, in a batch of their
own, video clips) per step with several teacher-forced questions each for the joint stage.

Every step draws one image resolution (and one clip size and length) so sequences pad little; the vision
tower runs once per image or clip and its tokens are shared by all its questions. Each step is a pure
function of (seed, step).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace

import easy_vqa
import numpy as np
import torch
from PIL import Image

from explainprune.data import Sample
from explainprune.data.prompting import prompt_texts
from explainprune.data.synthetic import SPATIAL_MARGIN, generate_sample
from explainprune.data.synthetic_video import HOLD, frame_objects, generate_clip
from explainprune.embedded.auxiliary import cell_targets
from explainprune.embedded.conversations import (
    CAPTION_QUESTIONS,
    EVEN_WEIGHTS,
    LEANING_WEIGHTS,
    caption_text,
    extra_question,
    extra_video_question,
)

SIZES = [112, 168, 224, 280]
SIZE_WEIGHTS = [0.2, 0.35, 0.4, 0.05]
WARMUP_SIZES = [112, 168, 224]
VISION_SIZES = [168, 224, 280]
VISION_INDEX_OFFSET = 10**8  # vision-stage scenes: train indices the joint stage never reaches
VIDEO_SIZES = [112, 168, 224]
VIDEO_FRAMES = [4, 6, 8]


@dataclass
class Visual:
    """One image or clip of a step: `frames` (one for an image) and cell targets per temporal patch
    (None for easy-vqa images, which have no masks)."""

    modality: str
    frames: list[Image.Image]
    targets: list[dict] | None


@dataclass
class BatchPlan:
    """Images, clips and questions of one step; `visual_of[j]` is the index of question j's visual."""

    visuals: list[Visual] = field(default_factory=list)
    questions: list[Sample] = field(default_factory=list)
    visual_of: list[int] = field(default_factory=list)

    def add(self, visual: Visual, questions: list[Sample]) -> None:
        self.visual_of += [len(self.visuals)] * len(questions)
        self.visuals.append(visual)
        self.questions += questions


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
    plan = BatchPlan()
    for k in range(images):
        sample = generate_sample("train", seed, VISION_INDEX_OFFSET + step * images + k, [size])
        plan.add(Visual("image", [sample.image], [cell_targets(sample.objects, sample.mask)]), [])
    return plan


def plan_batch(
    seed: int,
    step: int,
    synthetic_images: int,
    easy_images: int,
    questions_per_image: int,
    easy_pool: EasyVqaPool,
    warmup: bool,
    spatial_margin: float = SPATIAL_MARGIN,
    full_mix: bool = True,
) -> BatchPlan:
    """The step's images (one shared resolution) with their questions, captions and cell targets; the extra
    left/above questions compare objects at least `spatial_margin` of the side apart. `full_mix`: captions list
    the objects left to right or top to bottom and the extra questions lean to spatial and count types;
    without it (the early curriculum) captions go left to right only and every type is drawn equally often.
    The scenes are the same either way."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, step, 99]))
    size = int(rng.choice(WARMUP_SIZES)) if warmup else int(rng.choice(SIZES, p=SIZE_WEIGHTS))
    max_objects = 3 if warmup else 5
    plan = BatchPlan()
    for k in range(synthetic_images):
        sample = generate_sample("train", seed, step * synthetic_images + k, [size], 1 if warmup else 2, max_objects)
        questions = [sample]
        asked = {sample.question}
        for _ in range(4 * questions_per_image):
            if len(asked) >= questions_per_image:
                break
            extra = extra_question(rng, sample.objects, size, spatial_margin, LEANING_WEIGHTS if full_mix else EVEN_WEIGHTS)
            if extra is not None and extra[1] not in asked:
                asked.add(extra[1])
                questions.append(Sample(sample.id, sample.image, extra[1], extra[2], extra[0], sample.objects))
        axis = int(rng.integers(2)) if full_mix else 0
        caption = caption_text(sample.objects, axis)
        questions.append(Sample(sample.id, sample.image, CAPTION_QUESTIONS[axis], caption, "caption", sample.objects))
        plan.add(Visual("image", [sample.image], [cell_targets(sample.objects, sample.mask)]), questions)
    for image_id in rng.choice(easy_pool.image_ids, size=easy_images, replace=False):
        image = easy_pool.images[int(image_id)].resize((size, size), Image.Resampling.BICUBIC)
        pool = easy_pool.questions[int(image_id)]
        questions = [
            Sample(f"easy-{image_id}", image, *pool[int(q)], "easy")
            for q in rng.choice(len(pool), size=min(2, len(pool)), replace=False)
        ]
        plan.add(Visual("image", [image], None), questions)
    return plan


def plan_clips(seed: int, step: int, clips: int, questions_per_clip: int) -> BatchPlan:
    """The step's video clips (one shared size and frame count) with several questions each; clip indices
    of the train split follow the steps, so every step sees new clips. A batch of its own: its rows are
    longer than the images' and would pad them."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, step, 97]))
    size, frames = int(rng.choice(VIDEO_SIZES)), int(rng.choice(VIDEO_FRAMES))
    plan = BatchPlan()
    for k in range(clips):
        clip = generate_clip("train", seed, step * clips + k, [size], [frames])
        questions = [clip]
        asked = {clip.question}
        for _ in range(4 * questions_per_clip):
            if len(asked) >= questions_per_clip:
                break
            extra = extra_video_question(rng, clip.objects)
            if extra is not None and extra[1] not in asked:
                asked.add(extra[1])
                questions.append(replace(clip, question=extra[1], answer=extra[2], qtype=extra[0]))
        # one target set per temporal patch of the vision tower (2 frames, the length of each clip state)
        targets = [cell_targets(frame_objects(clip, f), clip.mask[f]) for f in range(0, frames, HOLD)]
        plan.add(Visual("video", clip.video, targets), questions)
    return plan


def encode_batch(processor, plan: BatchPlan) -> dict:
    """Model inputs for the plan: per-question text tensors, pixels of each image and clip once, answer-only
    labels. `image_rows`/`video_rows` give, per question row of that modality, the index of its visual among
    the plan's images/clips; `*_grid_thw` follow those rows (the rope index needs one grid per placeholder run)."""
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    answers = [q.answer for q in plan.questions]
    texts = prompt_texts(processor, plan.questions, answers)
    order = {"image": [], "video": []}  # plan visual index -> index among its modality
    for index, visual in enumerate(plan.visuals):
        order[visual.modality].append(index)
    batch: dict = {}
    tokens = {}
    for modality, key, pad in (("image", "pixel_values", processor.image_token), ("video", "pixel_values_videos", processor.video_token)):
        if not order[modality]:
            continue
        visuals = [plan.visuals[i] for i in order[modality]]
        if modality == "image":
            pixels = processor.image_processor(images=[v.frames[0] for v in visuals], return_tensors="pt")
            grid = pixels["image_grid_thw"]
        else:
            pixels = processor.video_processor(videos=[v.frames for v in visuals], return_tensors="pt")
            grid = pixels["video_grid_thw"]
        batch[key] = pixels[key]
        batch[f"{modality}_grid_unique"] = grid
        counts = (grid.prod(-1) // processor.image_processor.merge_size**2).tolist()
        tokens.update({plan_index: (pad, count) for plan_index, count in zip(order[modality], counts)})
    texts = [t.replace(tokens[v][0], tokens[v][0] * tokens[v][1]) for t, v in zip(texts, plan.visual_of)]
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    input_ids = encoded["input_ids"]
    labels = torch.full_like(input_ids, -100)
    for row, answer in enumerate(answers):
        length = len(tokenizer(answer)["input_ids"]) + 1  # the answer and the end-of-turn token
        labels[row, -length:] = input_ids[row, -length:]
    for modality in ("image", "video"):
        rows = [order[modality].index(v) for v in plan.visual_of if plan.visuals[v].modality == modality]
        batch[f"{modality}_rows"] = rows
        if rows:
            batch[f"{modality}_grid_thw"] = batch[f"{modality}_grid_unique"][rows]
    batch.update(
        input_ids=input_ids,
        attention_mask=encoded["attention_mask"],
        mm_token_type_ids=(input_ids == processor.image_token_id).long() + 2 * (input_ids == processor.video_token_id).long(),
        labels=labels,
    )
    return batch
