"""Chat prompts for a batch of samples, and answer matching."""

from __future__ import annotations

import string

from explainprune.data.sample import Sample

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def user_message(question: str, visuals: tuple[str, ...] = ("image",)) -> list[dict]:
    """The single user turn: the visuals ("image" / "video" placeholders, in order), then the question."""
    content = [{"type": kind} for kind in visuals] + [{"type": "text", "text": question}]
    return [{"role": "user", "content": content}]


def prompt_texts(processor, samples: list[Sample], answers: list[str] | None = None) -> list[str]:
    """Chat-formatted prompts ending at the assistant turn; with answers, each answer + end-of-turn follows."""
    prompts = [
        processor.apply_chat_template(user_message(s.question, (s.modality,)), add_generation_prompt=True, tokenize=False)
        for s in samples
    ]
    if answers is not None:
        if len(answers) != len(samples):
            raise ValueError(f"got {len(answers)} answers for {len(samples)} samples")
        end_of_turn = processor.tokenizer.eos_token
        prompts = [p + a + end_of_turn for p, a in zip(prompts, answers)]
    return prompts


def processor_inputs(processor, texts: list[str], images=None, videos=None, device=None):
    """The processor's left-padded BatchFeature of chat-formatted `texts` with their images and videos
    (in prompt order, flattened over the batch), its tensors on `device` (the model's) when given."""
    processor.tokenizer.padding_side = "left"
    media = {"images": images or None, "videos": videos or None}
    inputs = processor(text=texts, padding=True, return_tensors="pt", **{k: v for k, v in media.items() if v})
    return inputs if device is None else inputs.to(device)


def make_inputs(processor, samples: list[Sample], answers: list[str] | None = None, device=None):
    """A left-padded processor BatchFeature for the samples (teacher-forced when answers are given),
    its tensors on `device` (the model's device) when given. Videos go in as lists of PIL frames;
    images and videos may share a batch."""
    images = [s.image for s in samples if s.modality == "image"]
    videos = [s.video for s in samples if s.modality == "video"]
    return processor_inputs(processor, prompt_texts(processor, samples, answers), images, videos, device=device)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and collapse whitespace."""
    return " ".join(text.lower().translate(_PUNCTUATION).split())


def is_correct(prediction: str, answer: str) -> bool:
    """Exact match after normalisation."""
    return normalize_answer(prediction) == normalize_answer(answer)
