"""`Compressor`: the user-facing API. Score visual tokens, keep the top-k of each image, and run the
unchanged model on the shortened sequence through the normal transformers calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .adapters import EncodedBatch, get_adapter
from .errors import ExplainPruneError, InputMismatchError
from .inllm import InLLMPruner
from .prune import check_keep_ratio, gather_batch, with_replacements
from .scoring import Scorer, make_scorer
from .selection import Choice, choose, kept_positions

MODEL_INPUT_NAMES = frozenset({
    "input_ids", "attention_mask", "pixel_values", "pixel_values_videos", "image_grid_thw",
    "video_grid_thw", "mm_token_type_ids", "second_per_grid_ts", "image_sizes",
    "image_sizes_videos", "batch_num_images",
})  # fmt: skip


@dataclass(frozen=True)
class PruneStats:
    """Visual tokens per sample before and after pruning (scored and structural)."""

    visual_before: list[int]
    visual_after: list[int]


@dataclass(frozen=True)
class Prepared(Mapping):
    """The pruned sequence, left-padded, ready for `model(**prepared)` / `model.generate(**prepared)`.

    As a mapping it holds exactly `inputs_embeds`, `attention_mask` and `position_ids`; `kept` (per
    sample, the original sequence positions kept) and `stats` ride along.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    kept: list[torch.Tensor]
    stats: PruneStats

    _KEYS = ("inputs_embeds", "attention_mask", "position_ids")

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)


def prune_stats(encoded: EncodedBatch, kept: list[torch.Tensor]) -> PruneStats:
    return PruneStats(
        visual_before=[sum(s.num_tokens + s.structural.numel() for s in spans) for spans in encoded.spans],
        visual_after=[int(encoded.visual_mask(b)[kept[b]].sum()) for b in range(encoded.batch_size)],
    )


class Compressor:
    """Input-stage visual token compression for a Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision or LLaVA model.

    >>> compressor = Compressor(model, processor, scorer="learned", keep_ratio=0.5)
    >>> output_ids = compressor.generate(**inputs, max_new_tokens=32)

    `prepare(**inputs)` returns the pruned `inputs_embeds`, `attention_mask` and `position_ids` (a
    `Prepared`, usable as `model(**prepared)` and `model.generate(**prepared)`). Each image or video
    keeps max(1, round(keep_ratio * n)) of its n scored tokens; kept tokens keep their order and their
    original position ids (Qwen's 3-D M-RoPE included), so decoding continues at the right positions.
    In-LLM pruners (`fastv`) prune inside the model and are used through `generate` only.
    """

    def __init__(self, model, processor=None, scorer: str | Scorer = "layer0", keep_ratio: float = 0.5, **scorer_options):
        self.model = model
        self.processor = processor
        self.adapter = get_adapter(model)
        self.keep_ratio = keep_ratio
        self.scorer = make_scorer(scorer, **scorer_options)

    @property
    def keep_ratio(self) -> float:
        return self._keep_ratio

    @keep_ratio.setter
    def keep_ratio(self, value) -> None:
        self._keep_ratio = check_keep_ratio(value)

    @property
    def scorer(self):
        return self._scorer

    @scorer.setter
    def scorer(self, value) -> None:
        self._scorer = make_scorer(value)

    @property
    def input_stage(self) -> bool:
        """Whether the scorer prunes the LLM's input (else it prunes inside the LLM, via `generate`)."""
        return not isinstance(self.scorer, InLLMPruner)

    @torch.no_grad()
    def encode(self, capture_vision: bool | None = None, **inputs) -> EncodedBatch:
        """The unpruned batch as the language model sees it (embeddings, positions, visual spans).

        `capture_vision` (default: whether the scorer needs it) keeps the vision encoder's saliency
        attention input for saliency-based scorers (`explainprune.vision_saliency`).
        """
        if inputs.get("input_ids") is None:
            raise InputMismatchError("input_ids are required: pass the processor's output (compressor.prepare(**inputs))")
        if capture_vision is None:
            capture_vision = getattr(self.scorer, "needs_vision_capture", False)
        return self.adapter.encode(inputs, capture_vision=capture_vision)

    @torch.no_grad()
    def score(self, encoded: EncodedBatch) -> list[list[torch.Tensor]]:
        """The scorer's scores: per sample, per visual span, one per scored token."""
        return self.scorer.score(self.adapter, encoded)

    @torch.no_grad()
    def choose(self, encoded: EncodedBatch, scores: list[list[torch.Tensor]] | None = None) -> list[list[Choice]]:
        """Per sample, per span, what survives (`scores`, when given, are ranked instead of rescoring)."""
        return choose(self.scorer, self.adapter, encoded, self.keep_ratio, scores)

    def select(self, encoded: EncodedBatch, scores: list[list[torch.Tensor]] | None = None) -> list[torch.Tensor]:
        """Per sample, the sorted sequence positions that survive pruning."""
        return kept_positions(encoded, self.choose(encoded, scores))

    @torch.no_grad()
    def prepare(self, **inputs) -> Prepared:
        """Pruned `inputs_embeds`, `attention_mask`, `position_ids` for `model(**d)` / `model.generate(**d)`."""
        return self.prepare_encoded(self.encode(**inputs))

    @torch.no_grad()
    def prepare_encoded(self, encoded: EncodedBatch, scores: list[list[torch.Tensor]] | None = None) -> Prepared:
        """`prepare` for an already encoded batch (and optionally precomputed scores)."""
        if not self.input_stage:
            raise ExplainPruneError(
                f"scorer {self.scorer.name!r} prunes inside the LLM, not at its input: use "
                f"Compressor.generate(**inputs) instead of prepare()"
            )
        choices = self.choose(encoded, scores)
        kept = kept_positions(encoded, choices)
        model_inputs = gather_batch(with_replacements(encoded, choices), kept)
        return Prepared(**model_inputs, kept=kept, stats=prune_stats(encoded, kept))

    @torch.no_grad()
    def generate(self, **inputs) -> torch.Tensor:
        """Like `model.generate(**inputs, **generate_kwargs)` on the pruned sequence.

        Returns the prompt's input_ids followed by the new tokens, as `model.generate` does, so
        `output[:, inputs["input_ids"].shape[1]:]` are the new tokens.
        """
        model_inputs = {k: v for k, v in inputs.items() if k in MODEL_INPUT_NAMES}
        generate_kwargs = {k: v for k, v in inputs.items() if k not in MODEL_INPUT_NAMES}
        encoded = self.encode(**model_inputs)
        if self.input_stage:
            new_tokens = self.model.generate(**self.prepare_encoded(encoded), **generate_kwargs)
        else:
            new_tokens, _ = self.scorer.generate(self.adapter, encoded, self.keep_ratio, **generate_kwargs)
        return torch.cat([model_inputs["input_ids"], new_tokens.to(model_inputs["input_ids"].device)], dim=1)
