"""vLLM model classes that prune each image or video by the question, as `Compressor` does.

Data flow through vLLM (docs/vllm.md has the picture):
1. Prompt processing (front end). `PruningProcessor` gives each item k = max(1, round(keep * n))
   placeholders instead of n, puts the whole prompt's token ids into the item's data and into its
   multimodal hash. The hash keys vLLM's processor cache, encoder cache and the prefix-cache blocks
   from the item on, so a second question on the same image never reuses the first one's tokens.
2. Encoder (`embed_multimodal`, once per item). The vision tower runs on the full image; the
   unpruned prompt is rebuilt from the item's prompt ids (LLM-input embeddings, M-RoPE positions),
   our scorer chooses through `selection.choose` exactly as `Compressor` does, and the kept rows
   leave in sequence order with their original position ids in extra channels (`positions`).
3. Prefill. `get_mrope_input_positions` lays out text positions as the unpruned prompt has them;
   `embed_input_ids` strips the position channels of the rows in this step (any prefill chunk) and
   `forward` writes them over the placeholder positions before the decoder runs.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from contextvars import ContextVar

import numpy as np
import torch
from vllm.distributed import get_tensor_model_parallel_world_size, get_tp_group
from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLDummyInputsBuilder,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
    Qwen2_5_VLProcessingInfo,
)
from vllm.model_executor.models.qwen2_vl import (
    Qwen2VLDummyInputsBuilder,
    Qwen2VLForConditionalGeneration,
    Qwen2VLMultiModalProcessor,
    Qwen2VLProcessingInfo,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.hasher import MultiModalHasher
from vllm.multimodal.inputs import MultiModalFieldConfig
from vllm.multimodal.processing import PromptReplacement

from ...adapters import EncodedBatch, VisualSpan
from ...adapters.qwen2_5_vl import Qwen25VLAdapter
from ...adapters.qwen2_vl import Qwen2VLAdapter
from ...errors import ExplainPruneError
from ...prune import token_budget
from ...scoring import make_scorer
from ...scoring.learned import LearnedScorer
from ...selection import choose
from .adapter import VllmAdapter
from .positions import POSITION_CHANNELS, decode_positions, encode_positions, mrope_positions
from .settings import PruneSettings

PROMPT_FIELD = "explainprune_prompt_ids"
RECENT_SELECTIONS = 256
# The prompt being processed, from `apply` down to `_postprocess_hf_mm_data` (same call, same thread).
_PROMPT: ContextVar[tuple[int, ...] | None] = ContextVar("explainprune_prompt", default=None)


class PruningProcessingInfo:
    """One image or video per prompt (each item's choice depends on every token of its prompt), of
    the modalities the scorer can prune."""

    def get_supported_mm_limits(self):
        modalities = self.prune_settings().modalities()
        return {modality: int(modality in modalities) for modality in ("image", "video")}

    def prune_settings(self) -> PruneSettings:
        return PruneSettings.from_config(self.get_hf_config())


class PruningDummyInputsBuilder:
    """Profiling prompts end with a question, as every served prompt must."""

    def get_dummy_text(self, mm_counts) -> str:
        return super().get_dummy_text(mm_counts) + "?"


class PruningProcessor:
    """Pruned placeholder counts; the prompt in each item's data and multimodal hash."""

    def apply(self, inputs, timing_ctx):
        counts = inputs.mm_data_items.get_all_counts()
        if sum(counts.values()) > 1:
            raise ExplainPruneError(
                f"explainprune in vLLM prunes one image or video per prompt, got {dict(counts)}: send one per request"
            )
        config = self.info.get_hf_config()
        placeholders = {config.image_token_id, config.video_token_id}
        if inputs.prompt and inputs.prompt[-1] in placeholders:
            raise ExplainPruneError(
                "the prompt ends with the image or video: explainprune scores it by the text that follows, "
                "so put the question after it (chat requests do this)"
            )
        token = _PROMPT.set(tuple(inputs.prompt))
        try:
            return super().apply(inputs, timing_ctx)
        finally:
            _PROMPT.reset(token)

    def _get_mm_hashes(self, inputs):
        algorithm = self.info.ctx.get_mm_config().mm_hasher_algorithm
        prompt = np.asarray(inputs.prompt, dtype=np.int64).tobytes()
        settings = self.info.prune_settings().describe()
        return {
            modality: [
                MultiModalHasher.hash_kwargs(algorithm, item=item, explainprune_prompt=prompt, explainprune=settings)
                for item in hashes
            ]
            for modality, hashes in super()._get_mm_hashes(inputs).items()
        }

    def _postprocess_hf_mm_data(self, mm_inputs, hf_processor_mm_kwargs, processed_data):
        processed = super()._postprocess_hf_mm_data(mm_inputs, hf_processor_mm_kwargs, processed_data)
        grids = processed.get("image_grid_thw", processed.get("video_grid_thw"))
        prompt = _PROMPT.get()
        if grids is not None and prompt is not None:
            processed[PROMPT_FIELD] = torch.tensor([prompt] * len(grids), dtype=torch.long)
        return processed

    def _get_mm_fields_config(self, hf_inputs, hf_processor_mm_kwargs):
        fields = dict(super()._get_mm_fields_config(hf_inputs, hf_processor_mm_kwargs))
        modality = "image" if "image_grid_thw" in hf_inputs else "video"
        fields[PROMPT_FIELD] = MultiModalFieldConfig.batched(modality)
        return fields

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs):
        keep_ratio = self.info.prune_settings().keep_ratio

        def pruned(replacement):
            def kept_placeholders(item_index: int) -> list[int]:
                full = replacement(item_index)
                return full[: token_budget(keep_ratio, len(full))]

            return kept_placeholders

        return [
            PromptReplacement(modality=update.modality, target=update.target, replacement=pruned(update.replacement))
            for update in super()._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)
        ]


class PruningModel:
    """The model side: choose in `embed_multimodal`, restore positions in `forward`."""

    adapter_family: str

    def __init__(self, *, vllm_config, prefix: str = ""):
        refuse_unsupported_features(vllm_config)
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.prune_settings = PruneSettings.from_config(self.config)
        # HF models carry their directory here; the learned scorer finds the embedded predictor by it.
        self.name_or_path = vllm_config.model_config.model
        self.scorer = make_scorer(self.prune_settings.scorer, **self.prune_settings.scorer_options())
        if isinstance(self.scorer, LearnedScorer):
            self.scorer.predictor_for(self)  # no predictor for this model: refuse at start, not at the first image
        self.scoring_adapter = VllmAdapter(self, self.adapter_family)
        self.pending_positions: tuple[torch.Tensor, torch.Tensor] | None = None
        self.recent_selections: deque = deque(maxlen=RECENT_SELECTIONS)

    # -- encoder: choose -------------------------------------------------------------------------
    def embed_multimodal(self, **kwargs):
        prompts = kwargs.pop(PROMPT_FIELD, None)
        features = super().embed_multimodal(**kwargs)
        if len(features) == 0:
            return features
        if prompts is None:
            raise ExplainPruneError("visual inputs reached the model without their prompt: were they processed by our processor?")
        items = visual_items(kwargs, getattr(self.config.vision_config, "tokens_per_second", 1.0),
                             self.config.vision_config.spatial_merge_size)  # fmt: skip
        return tuple(self.prune_item(f, p, *item) for f, p, item in zip(features, prompts, items, strict=True))

    @torch.inference_mode()
    def prune_item(self, features, prompt, modality, grid, t_factor) -> torch.Tensor:
        """The kept rows of one item's (n, D) features in sequence order, each followed by its
        original M-RoPE position ids in `POSITION_CHANNELS` channels."""
        token_id = self.config.image_token_id if modality == "image" else self.config.video_token_id
        prompt = prompt.to(features.device, torch.long)
        offset = int((prompt == token_id).nonzero()[0])
        n = features.shape[0]
        input_ids = torch.cat([prompt[:offset], prompt.new_full((n,), token_id), prompt[offset + 1 :]])
        embeds = self.language_model.embed_input_ids(input_ids)
        embeds[offset : offset + n] = features.to(embeds.dtype)
        positions = mrope_positions(len(input_ids), [(offset, *grid, t_factor)], device=features.device)
        span = VisualSpan(modality, torch.arange(offset, offset + n), [grid])
        encoded = EncodedBatch(input_ids[None], embeds[None], torch.ones_like(input_ids)[None], positions[:, None], [[span]])
        ((choice,),) = choose(self.scorer, self.scoring_adapter, encoded, self.prune_settings.keep_ratio)
        order = torch.argsort(choice.indices.cpu())
        kept = same_on_every_rank(choice.indices.cpu()[order])
        rows = features[kept.to(features.device)] if choice.embeds is None else choice.embeds[order].to(features.dtype)
        self.recent_selections.append((tuple(prompt.tolist()), modality, grid, kept.tolist()))
        return torch.cat([rows, encode_positions(positions[:, offset + kept.to(features.device)], rows.dtype)], dim=1)

    def explainprune_selections(self) -> list[tuple]:
        """The latest choices (prompt token ids with one placeholder, modality, grid, kept raster indices)."""
        return list(self.recent_selections)

    def get_encoder_cudagraph_config(self):
        # Encoder CUDA graphs return the tower's output without `embed_multimodal`, i.e. unpruned.
        return dataclasses.replace(super().get_encoder_cudagraph_config(), modalities=[])

    # -- prefill: positions ----------------------------------------------------------------------
    def get_mrope_input_positions(self, input_tokens, mm_features):
        """Text positions as in the unpruned prompt; each item's placeholders get the first of its
        unpruned positions until `forward` writes the kept tokens' own."""
        features = sorted(mm_features, key=lambda f: f.mm_position.offset)
        unpruned_items, keep_columns, shift, cursor = [], [], 0, 0
        for feature, (offset, t, h, w, t_factor) in zip(features, self.iter_mm_grid_thw(features), strict=True):
            k, n = feature.mm_position.length, t * h * w
            unpruned_items.append((offset + shift, t, h, w, t_factor))
            keep_columns.append(torch.arange(cursor + shift, offset + shift + k))
            shift += n - k
            cursor = offset + k
        keep_columns.append(torch.arange(cursor + shift, len(input_tokens) + shift))
        positions = mrope_positions(len(input_tokens) + shift, unpruned_items)[:, torch.cat(keep_columns)]
        return positions, int(positions.max()) + 1 - len(input_tokens)

    def embed_input_ids(self, input_ids, multimodal_embeddings=None, *, is_multimodal=None):
        self.pending_positions = None
        if multimodal_embeddings is not None and len(multimodal_embeddings) > 0:
            channels = torch.cat([e[:, -POSITION_CHANNELS:] for e in multimodal_embeddings])
            self.pending_positions = (is_multimodal, decode_positions(channels))
            multimodal_embeddings = [e[:, :-POSITION_CHANNELS] for e in multimodal_embeddings]
        return super().embed_input_ids(input_ids, multimodal_embeddings, is_multimodal=is_multimodal)

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        if self.pending_positions is not None:
            is_multimodal, kept_positions = self.pending_positions
            self.pending_positions = None
            rows = is_multimodal.nonzero().flatten().to(positions.device)
            # In place: `positions` is the runner's persistent buffer, rewritten for every step.
            positions[:, rows] = kept_positions.to(positions.device, positions.dtype)
        return super().forward(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)


def refuse_unsupported_features(vllm_config) -> None:
    """Engine features whose data flow would bypass the choice or the restored positions."""
    parallel = vllm_config.parallel_config
    multimodal = vllm_config.model_config.multimodal_config
    refusals = {
        "pipeline parallelism (later stages never see the kept tokens' positions)": parallel.pipeline_parallel_size > 1,
        "micro-batching / DBO (the forward sees slices of the step)": parallel.use_ubatching,
        "speculative decoding (the drafter embeds tokens on its own)": vllm_config.speculative_config is not None,
        "EVS video pruning (video_pruning_rate; explainprune prunes videos itself)": (
            multimodal is not None and multimodal.is_multimodal_pruning_enabled()
        ),
    }
    for feature, used in refusals.items():
        if used:
            raise ExplainPruneError(f"explainprune in vLLM does not support {feature}: switch it off")


def visual_items(kwargs, tokens_per_second: float, merge: int):
    """(modality, merged (t, h, w), t_factor) per item, in the order `embed_multimodal` returns them."""
    order = []
    for key in kwargs:
        modality = {"pixel_values": "image", "image_embeds": "image", "pixel_values_videos": "video", "video_embeds": "video"}.get(key)
        if modality and modality not in order:
            order.append(modality)
    for modality in order:
        seconds = kwargs.get("second_per_grid_ts") if modality == "video" else None
        for i, (t, h, w) in enumerate(kwargs[f"{modality}_grid_thw"].tolist()):
            t_factor = float(seconds[i]) * tokens_per_second if seconds is not None else 1.0
            yield modality, (t, h // merge, w // merge), t_factor


def same_on_every_rank(kept: torch.Tensor) -> torch.Tensor:
    """Tensor-parallel ranks score identical gathered inputs; rank 0's choice is still broadcast so a
    last-bit difference in a reduction can never make ranks keep different tokens."""
    if get_tensor_model_parallel_world_size() == 1:
        return kept
    group = get_tp_group()
    return group.broadcast(kept.to(group.device), src=0).cpu()


class ExplainPruneQwen2VLProcessingInfo(PruningProcessingInfo, Qwen2VLProcessingInfo):
    pass


class ExplainPruneQwen2VLDummyInputsBuilder(PruningDummyInputsBuilder, Qwen2VLDummyInputsBuilder):
    pass


class ExplainPruneQwen2VLMultiModalProcessor(PruningProcessor, Qwen2VLMultiModalProcessor):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    ExplainPruneQwen2VLMultiModalProcessor,
    info=ExplainPruneQwen2VLProcessingInfo,
    dummy_inputs=ExplainPruneQwen2VLDummyInputsBuilder,
)
class ExplainPruneQwen2VLForConditionalGeneration(PruningModel, Qwen2VLForConditionalGeneration):
    adapter_family = Qwen2VLAdapter.family


class ExplainPruneQwen2_5_VLProcessingInfo(PruningProcessingInfo, Qwen2_5_VLProcessingInfo):
    pass


class ExplainPruneQwen2_5_VLDummyInputsBuilder(PruningDummyInputsBuilder, Qwen2_5_VLDummyInputsBuilder):
    pass


class ExplainPruneQwen2_5_VLMultiModalProcessor(PruningProcessor, Qwen2_5_VLMultiModalProcessor):
    pass


@MULTIMODAL_REGISTRY.register_processor(
    ExplainPruneQwen2_5_VLMultiModalProcessor,
    info=ExplainPruneQwen2_5_VLProcessingInfo,
    dummy_inputs=ExplainPruneQwen2_5_VLDummyInputsBuilder,
)
class ExplainPruneQwen2_5_VLForConditionalGeneration(PruningModel, Qwen2_5_VLForConditionalGeneration):
    adapter_family = Qwen25VLAdapter.family
