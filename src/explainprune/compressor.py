"""`Compressor`: the user-facing API. Score visual tokens, keep the top-k of each image, and run the
unchanged model on the shortened sequence through the normal transformers calls."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .adapters import EncodedBatch, get_adapter
from .errors import ExplainPruneError, InputMismatchError
from .prune import check_keep_ratio, gather_batch, kept_positions, padding_side_of, token_budget
from .scoring import Scorer, make_scorer


@dataclass
class PruneStats:
    """Visual tokens per sample before and after the last `prepare`/`generate`."""

    visual_before: list[int]
    visual_after: list[int]


class Compressor:
    """Input-stage visual token compression for a Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision or LLaVA model.

    >>> compressor = Compressor(model, processor, scorer="layer0", keep_ratio=0.5)
    >>> output_ids = compressor.generate(**inputs, max_new_tokens=32)

    `prepare(**inputs)` returns `inputs_embeds`, `attention_mask` and `position_ids` of the pruned
    sequence, ready for `model(**d)` and `model.generate(**d)`. Each image or video keeps
    max(1, round(keep_ratio * n)) of its n scored tokens; kept tokens keep their order and their
    original position ids (Qwen's 3-D M-RoPE included), so decoding continues at the right positions.
    """

    def __init__(self, model, processor=None, scorer: str | Scorer = "layer0", keep_ratio: float = 0.5, **scorer_options):
        self.model = model
        self.processor = processor
        self.adapter = get_adapter(model)
        self.keep_ratio = check_keep_ratio(keep_ratio)
        self.scorer = make_scorer(scorer, **scorer_options)
        self.last_stats: PruneStats | None = None

    @torch.no_grad()
    def encode(self, **inputs) -> EncodedBatch:
        """The unpruned batch as the language model sees it (embeddings, positions, visual spans)."""
        if "input_ids" not in inputs or inputs["input_ids"] is None:
            raise InputMismatchError("input_ids are required: pass the processor's output (compressor.prepare(**inputs))")
        return self.adapter.encode(inputs)

    @torch.no_grad()
    def score(self, encoded: EncodedBatch) -> list[list[torch.Tensor]]:
        """The scorer's scores: per sample, per visual span, one per scored token."""
        return self.scorer.score(self, encoded)

    def select(self, encoded: EncodedBatch, scores: list[list[torch.Tensor]] | None = None) -> list[torch.Tensor]:
        """Per sample, the sorted sequence positions that survive pruning (`scores` computed if not given)."""
        if scores is None and any(encoded.spans) and self.keep_ratio < 1.0:
            scores = self.score(encoded)
        kept = []
        for b, spans in enumerate(encoded.spans):
            chosen = []
            for s, span in enumerate(spans):
                k = token_budget(self.keep_ratio, span.num_tokens)
                if scores is None or k >= span.num_tokens:
                    chosen.append(torch.arange(span.num_tokens))
                else:
                    chosen.append(self.scorer.select(scores[b][s], span, k))
            kept.append(kept_positions(encoded, b, chosen))
        self.last_stats = PruneStats(
            visual_before=[sum(s.num_tokens + s.structural.numel() for s in spans) for spans in encoded.spans],
            visual_after=[
                int(encoded.visual_mask(b)[kept[b]].sum()) for b in range(encoded.batch_size)
            ],
        )
        return kept

    @torch.no_grad()
    def prepare(self, **inputs) -> dict:
        """Pruned `inputs_embeds`, `attention_mask`, `position_ids` for `model(**d)` / `model.generate(**d)`."""
        return self.prepare_encoded(self.encode(**inputs))

    @torch.no_grad()
    def prepare_encoded(self, encoded: EncodedBatch, scores: list[list[torch.Tensor]] | None = None) -> dict:
        """`prepare` for an already encoded batch (and optionally precomputed scores)."""
        if not self.scorer.input_stage:
            raise ExplainPruneError(
                f"scorer {self.scorer.name!r} prunes inside the LLM, not at its input: use "
                f"Compressor.generate(**inputs) instead of prepare()"
            )
        kept = self.select(encoded, scores)
        return gather_batch(encoded, kept, padding_side_of(encoded.attention_mask))

    @torch.no_grad()
    def generate(self, **inputs) -> torch.Tensor:
        """Like `model.generate(**inputs, **generate_kwargs)` on the pruned sequence.

        Returns the prompt's input_ids followed by the new tokens, as `model.generate` does, so
        `output[:, inputs["input_ids"].shape[1]:]` are the new tokens.
        """
        model_input_names = {
            "input_ids", "attention_mask", "pixel_values", "pixel_values_videos", "image_grid_thw",
            "video_grid_thw", "mm_token_type_ids", "second_per_grid_ts", "image_sizes",
            "image_sizes_videos", "batch_num_images",
        }  # fmt: skip
        model_inputs = {k: v for k, v in inputs.items() if k in model_input_names}
        generate_kwargs = {k: v for k, v in inputs.items() if k not in model_input_names}
        if not self.scorer.input_stage:
            new_tokens = self.scorer.generate(self, model_inputs, **generate_kwargs)
        else:
            prepared = self.prepare(**model_inputs)
            new_tokens = self.model.generate(**prepared, **generate_kwargs)
        return torch.cat([model_inputs["input_ids"], new_tokens.to(model_inputs["input_ids"].device)], dim=1)
