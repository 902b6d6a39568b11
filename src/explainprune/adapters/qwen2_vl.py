"""Qwen2-VL: merged patch tokens, one contiguous run per image or video, 3-D M-RoPE positions."""

from __future__ import annotations

import torch
from transformers.vision_utils import get_vision_window_index

from ..errors import InputMismatchError
from ..vision_saliency import TokenSaliency, packed_qwen_attention
from .base import Adapter, EncodedBatch, merge_spans, spans_from_grids


class Qwen2VLAdapter(Adapter):
    family = "qwen2-vl"
    model_types = ("qwen2_vl",)

    def _grids(self, grid_thw) -> list[tuple[int, int, int]]:
        merge = self.config.vision_config.spatial_merge_size
        if grid_thw is None:
            return []
        return [(int(t), int(h) // merge, int(w) // merge) for t, h, w in grid_thw.tolist()]

    def _checked_grids(self, pixels, grid_thw, what: str):
        """The (n, 3) patch grids of the images (or videos), refused unless they describe `pixels`: positive,
        divisible by the merge size, covering exactly its rows (one per patch)."""
        key = "image_grid_thw" if what == "image" else "video_grid_thw"
        if pixels is None:
            return None if grid_thw is None or not len(grid_thw) else grid_thw
        if grid_thw is None:
            raise InputMismatchError(f"{what} pixels were given without `{key}`: pass the processor's full output")
        merge = self.config.vision_config.spatial_merge_size
        grid = torch.as_tensor(grid_thw)
        patches = pixels.shape[0] if pixels.ndim else 0
        fits = grid.ndim == 2 and grid.shape[1] == 3 and bool((grid > 0).all())
        fits = fits and bool((grid[:, 1:] % merge == 0).all()) and int(grid.prod(-1).sum()) == patches
        if not fits:
            raise InputMismatchError(
                f"`{key}` {grid.tolist()} does not describe the {patches} patches of the {what} pixels: pass the "
                "grids the processor made with these pixels"
            )
        return grid_thw
    def saliency_attention(self):
        """The last full-attention vision block's attention (Qwen2.5-VL: the last of fullatt_block_indexes)."""
        vision = self.model.model.visual
        full_attention = getattr(vision.config, "fullatt_block_indexes", None)
        return vision.blocks[full_attention[-1] if full_attention else len(vision.blocks) - 1].attn

    def raster_order(self, grid_thw: torch.Tensor) -> torch.Tensor:
        """Merge groups in the vision blocks' order -> the LLM's raster order: Qwen2.5-VL's window
        reordering undone (argsort of its window index, as the model orders its merger output)."""
        config = self.model.model.visual.config
        if not getattr(config, "fullatt_block_indexes", None):
            return torch.arange(int((grid_thw.prod(-1) // config.spatial_merge_size**2).sum()))
        window_index, _ = get_vision_window_index(grid_thw.cpu(), config.spatial_merge_size, config.window_size, config.patch_size)
        return torch.argsort(window_index)

    def token_saliency(self, capture):
        """Patch saliency summed over each 2x2 merge group, keys averaged, in the LLM's raster order."""
        unit = self.model.model.visual.config.spatial_merge_size**2
        result = {}
        for modality, hidden, kwargs in self.captured_calls(capture):
            grid_thw = capture.inputs[f"{modality}_grid_thw"]
            received, keys = packed_qwen_attention(
                self.saliency_attention(), hidden, kwargs["cu_seqlens"], kwargs["position_embeddings"]
            )
            raster = self.raster_order(grid_thw).to(received.device)
            saliency = received.view(-1, unit).sum(-1)[raster]
            keys = keys.view(-1, unit, keys.shape[-1]).mean(1)[raster]
            sizes = (grid_thw.prod(-1) // unit).tolist()
            result[modality] = [TokenSaliency(s, k) for s, k in zip(saliency.split(sizes), keys.split(sizes))]
        return result

    def rope_index_kwargs(self, inputs: dict) -> dict:
        """Extra arguments of the family's get_rope_index."""
        return {}

    def encode_checked(self, inputs: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncodedBatch:
        inner = self.model.model
        image_id, video_id = self.config.image_token_id, self.config.video_token_id
        pixel_values = self.require(inputs, "pixel_values", input_ids, image_id, "image")
        pixel_values_videos = self.require(inputs, "pixel_values_videos", input_ids, video_id, "video")
        image_grid_thw = self._checked_grids(pixel_values, inputs.get("image_grid_thw"), "image")
        video_grid_thw = self._checked_grids(pixel_values_videos, inputs.get("video_grid_thw"), "video")
        spans = merge_spans(  # before the vision tower: refuses grids that do not fit the prompt
            spans_from_grids(input_ids, image_id, "image", self._grids(image_grid_thw)),
            spans_from_grids(input_ids, video_id, "video", self._grids(video_grid_thw)),
        )

        embeds = self.model.get_input_embeddings()(input_ids)
        image_features = (
            list(inner.get_image_features(pixel_values, image_grid_thw, return_dict=True).pooler_output)
            if pixel_values is not None
            else []
        )
        embeds = self.scatter_features(embeds, input_ids, image_id, image_features, "image")
        video_features = (
            list(inner.get_video_features(pixel_values_videos, video_grid_thw, return_dict=True).pooler_output)
            if pixel_values_videos is not None
            else []
        )
        embeds = self.scatter_features(embeds, input_ids, video_id, video_features, "video")

        mm_token_type_ids = inputs.get("mm_token_type_ids")
        if mm_token_type_ids is None:
            mm_token_type_ids = (input_ids == image_id).int() + 2 * (input_ids == video_id).int()
        if image_grid_thw is None and video_grid_thw is None:
            position_ids = self.text_position_ids(attention_mask).unsqueeze(0).expand(3, -1, -1)
        else:
            position_ids, _ = inner.get_rope_index(
                input_ids,
                mm_token_type_ids=mm_token_type_ids,
                image_grid_thw=image_grid_thw,
                video_grid_thw=video_grid_thw,
                attention_mask=attention_mask,
                **self.rope_index_kwargs(inputs),
            )
        return EncodedBatch(input_ids, embeds, attention_mask, position_ids, spans)
