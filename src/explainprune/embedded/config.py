"""The embedded model's training recipe as one config: its defaults are the shipped recipe. Light (no torch):
the command line builds its options from it (`explainprune.configs`).

`explainprune embedded train --out DIR --seed S` trains from these defaults; every field is also an
option (`--steps 3000`), and the run saves the config verbatim as DIR/training-config.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from explainprune.configs import check_config
from explainprune.errors import ExplainPruneError
from explainprune.options import positive_float, positive_int


def _help(text: str, kind=None) -> dict:
    return {"help": text} | ({"type": kind} if kind else {})


@dataclass(frozen=True)
class TrainingConfig:
    """Stages: the vision tower alone on dense cell targets (`vision_steps`); the whole model on image
    questions, captions, cell and attention losses (`steps`, the image stage); then the whole model on
    video clips with a few scenes per step (`video_steps`, the video stage, its own learning-rate cycle)."""

    seed: int = field(default=0, metadata=_help("seed of the weights and of every training batch"))
    vision_steps: int = field(default=800, metadata=_help("steps of the vision-only stage"))
    vision_images: int = field(default=16, metadata=_help("scenes per vision-stage step", positive_int))
    vision_lr: float = field(default=3e-3, metadata=_help("peak learning rate of the vision stage", positive_float))
    steps: int = field(default=6000, metadata=_help("steps of the image stage"))
    lr: float = field(default=1.5e-3, metadata=_help("peak learning rate of the image stage", positive_float))
    first_cycle: int = field(
        default=1500,
        metadata=_help("the image stage's learning rate runs a first warm-up + cosine cycle of this many steps, "
                       "then a second cycle over the rest (0: one cycle)"),
    )  # fmt: skip
    full_mix_from: int = field(
        default=0,
        metadata=_help("curriculum: image-stage steps before this one caption left to right only and draw every extra "
                       "question type equally often; from it on, captions also go top to bottom, extra questions lean to "
                       "spatial and count types, and the learning rate starts a new cycle peaking at --full-mix-lr "
                       "(0: the full mix from the start; the shipped image model's run switched at 3200)"),
    )  # fmt: skip
    full_mix_lr: float = field(
        default=7.5e-4, metadata=_help("peak learning rate of the cycle that starts at --full-mix-from", positive_float)
    )
    warmup_fraction: float = field(default=0.05, metadata=_help("share of the image stage on 1-3 objects and small sizes"))
    synthetic_images: int = field(default=8, metadata=_help("synthetic scenes per image-stage step", positive_int))
    easy_images: int = field(default=2, metadata=_help("easy-vqa images per image-stage step"))
    questions_per_image: int = field(default=4, metadata=_help("questions per synthetic scene (plus a caption)", positive_int))
    early_margin: float = field(
        default=0.12,
        metadata=_help("the first --early-margin-steps image-stage steps ask extra left/above questions of objects "
                       "this close (fraction of the side; the test data's margin is 0.25)", positive_float),
    )  # fmt: skip
    early_margin_steps: int = field(
        default=0, metadata=_help("image-stage steps with --early-margin (0: none; the shipped image model had 2400)")
    )
    video_steps: int = field(
        default=2400,
        metadata=_help("steps of the video stage, after the image stage, with its own warm-up + cosine (0: images only)"),
    )  # fmt: skip
    video_lr: float = field(default=1e-3, metadata=_help("peak learning rate of the video stage", positive_float))
    clips: int = field(default=3, metadata=_help("video clips per video-stage step", positive_int))
    video_images: int = field(
        default=4, metadata=_help("synthetic scenes per video-stage step (they keep the image skills)", positive_int)
    )
    video_easy_images: int = field(default=1, metadata=_help("easy-vqa images per video-stage step"))
    questions_per_clip: int = field(default=4, metadata=_help("questions per video clip", positive_int))
    aux_weight: float = field(default=1.0, metadata=_help("weight of the dense cell loss"))
    caption_weight: float = field(default=0.5, metadata=_help("weight of the caption loss"))
    attention_weight: float = field(default=0.5, metadata=_help("weight of the attention loss (0: off)"))
    attention_layers: tuple[int, ...] = field(default=(1, 2), metadata=_help("layers whose heads the attention loss supervises"))
    track_weight: float = field(
        default=1.0,
        metadata=_help("weight of the clips' layer-0 look-back loss: one head sends each object token to the same "
                       "object in earlier temporal patches (0: off)"),
    )  # fmt: skip
    precision: str = field(
        default="bf16",
        metadata={"help": "autocast dtype of the image and video stages' batches: bf16 (the recipe; fast only on CPUs "
                          "with native bf16 such as AVX-512 BF16) or fp32 (trains other weights)",
                  "choices": ("bf16", "fp32")},
    )  # fmt: skip
    eval_every: int = field(default=400, metadata=_help("steps between validation, log lines and checkpoints", positive_int))
    val_n: int = field(default=120, metadata=_help("validation scenes", positive_int))
    val_clips: int = field(default=100, metadata=_help("validation clips", positive_int))
    test_n: int = field(default=500, metadata=_help("synthetic test questions per resolution in the final report", positive_int))
    test_clips: int = field(default=500, metadata=_help("synthetic video test clips in the final report", positive_int))
    easy_test_n: int = field(default=1000, metadata=_help("easy-vqa test questions in the final report (0: all)"))

    def __post_init__(self):
        check_config(self)
        if not 0 < self.early_margin < 1:
            raise ExplainPruneError(f"--early-margin must be between 0 and 1 (a fraction of the side), got {self.early_margin}")
        if self.full_mix_from and not self.first_cycle < self.full_mix_from < self.steps:
            raise ExplainPruneError(
                f"--full-mix-from must fall after --first-cycle ({self.first_cycle}) and before --steps ({self.steps}), "
                f"got {self.full_mix_from} (0: no curriculum)"
            )
        if self.warmup_fraction > 1:
            raise ExplainPruneError(f"--warmup-fraction must be at most 1, got {self.warmup_fraction}")
