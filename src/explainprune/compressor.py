"""`Compressor`: the user-facing API. Score visual tokens, keep the top-k of each image, and run the
unchanged model on the shortened sequence through the normal transformers calls."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from transformers.generation.utils import GenerateDecoderOnlyOutput

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
IGNORED_INPUT_NAMES = frozenset({"token_type_ids"})  # some tokenizers return it; the models do not use it
BUILT_INPUT_NAMES = frozenset({"inputs_embeds", "position_ids", "cache_position", "past_key_values"})


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


def split_generate_inputs(inputs: dict) -> tuple[dict, dict]:
    """(the processor's inputs, the generation options) of a `Compressor.generate` call, refusing
    options that cannot mean what they would mean for `model.generate` on the unpruned prompt."""
    model_inputs = {k: v for k, v in inputs.items() if k in MODEL_INPUT_NAMES}
    options = {k: v for k, v in inputs.items() if k not in MODEL_INPUT_NAMES | IGNORED_INPUT_NAMES}
    built = sorted(set(options) & BUILT_INPUT_NAMES)
    if built:
        raise ExplainPruneError(
            f"Compressor.generate builds {', '.join(built)} itself from input_ids and the images: pass the "
            f"processor's output (or call model.generate(**compressor.prepare(**inputs)) yourself)"
        )
    settings = sorted(set(options) & {"keep_ratio", "scorer"})
    if settings:
        raise ExplainPruneError(
            f"{', '.join(settings)} is a setting of the Compressor, not of generate: set compressor.{settings[0]} "
            "or pass it to Compressor(...)"
        )
    max_new_tokens = options.get("max_new_tokens")
    if max_new_tokens is not None and (
        isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 1
    ):
        raise ExplainPruneError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    length_limits = sorted(set(options) & {"max_length", "min_length"})
    if length_limits:
        raise ExplainPruneError(
            f"{', '.join(length_limits)} would count the pruned prompt, which is shorter than input_ids: "
            "use max_new_tokens / min_new_tokens"
        )
    return model_inputs, options


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
        unknown = sorted(set(inputs) - MODEL_INPUT_NAMES - IGNORED_INPUT_NAMES)
        if unknown:
            raise InputMismatchError(
                f"unknown input(s) {unknown}: prepare() and encode() take the processor's output only "
                f"(settings such as keep_ratio belong to the Compressor)"
            )
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
    def generate(self, **inputs):
        """Like `model.generate(**inputs, **generate_kwargs)` on the pruned sequence.

        Returns the prompt's input_ids followed by the new tokens, as `model.generate` does, so
        `output[:, inputs["input_ids"].shape[1]:]` are the new tokens. With
        `return_dict_in_generate=True` it returns `model.generate`'s output object whose `sequences`
        are those ids (its scores, attentions, ... are of the pruned sequence).
        """
        model_inputs, generate_kwargs = split_generate_inputs(inputs)
        encoded = self.encode(**model_inputs)
        input_ids = model_inputs["input_ids"]
        if self.input_stage:
            prepared = self.prepare_encoded(encoded)
            try:
                output = self.model.generate(**prepared, **generate_kwargs)
            except (ValueError, TypeError, ArithmeticError) as error:  # transformers refused an option (num_beams=0, ...)
                raise ExplainPruneError(f"model.generate refused: {' '.join(str(error).split())}") from error
        else:
            as_dict = generate_kwargs.pop("return_dict_in_generate", False)
            new_tokens, _ = self.scorer.generate(self.adapter, encoded, self.keep_ratio, **generate_kwargs)
            output = GenerateDecoderOnlyOutput(sequences=new_tokens) if as_dict else new_tokens
        if isinstance(output, torch.Tensor):
            return torch.cat([input_ids, output.to(input_ids.device)], dim=1)
        output.sequences = torch.cat([input_ids, output.sequences.to(input_ids.device)], dim=1)
        return output
