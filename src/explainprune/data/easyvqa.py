"""The installed `easy_vqa` dataset (64x64 shape images), upscaled for the vision models."""

from __future__ import annotations

import easy_vqa
from PIL import Image

from explainprune.data.sample import Sample

UPSCALED_SIZE = 224
COLOUR_ANSWERS = {"red", "green", "blue", "black", "gray", "teal", "brown", "yellow"}


def load_easy_vqa(split: str, n: int | None = None, size: int = UPSCALED_SIZE) -> list[Sample]:
    """The first `n` questions (all if None) of the easy-vqa `split` ('train' or 'test')."""
    if split == "train":
        questions, answers, image_ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    elif split == "test":
        questions, answers, image_ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    else:
        raise ValueError(f"easy-vqa split must be 'train' or 'test', got {split!r}")
    count = len(questions) if n is None else min(n, len(questions))
    images: dict[int, Image.Image] = {}
    samples = []
    for index in range(count):
        image_id = image_ids[index]
        if image_id not in images:
            with Image.open(paths[image_id]) as raw:
                images[image_id] = raw.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        answer = answers[index]
        samples.append(
            Sample(f"easy-vqa-{split}-{index}", images[image_id], questions[index], answer, _qtype(answer))
        )
    return samples


def _qtype(answer: str) -> str:
    if answer in ("yes", "no"):
        return "easy_yesno"
    return "easy_colour" if answer in COLOUR_ANSWERS else "easy_shape"
