"""LLaVA-OneVision: per image a base grid, anyres tiles with an image_newline token ending each row;
per video pooled frames and one closing image_newline. Newline tokens are structural: kept, never scored."""

from __future__ import annotations

import math

import torch
from transformers.models.llava_onevision.modeling_llava_onevision import image_size_to_num_patches

from ..errors import InputMismatchError
from ..vision_saliency import TokenSaliency, batched_attention, feature_layer_attention
from .base import Adapter, EncodedBatch, VisualSpan, assign_placeholders, merge_spans


class LlavaOnevisionAdapter(Adapter):
    family = "llava-onevision"
    model_types = ("llava_onevision",)

    @property
    def _base_side(self) -> int:
        vision = self.config.vision_config
        return vision.image_size // vision.patch_size

    def _newline_mask(self, features: torch.Tensor) -> torch.Tensor:
        newline = self.model.model.image_newline.to(features.dtype)
        return (features == newline).all(-1)

    def _image_layout(self, features: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
        """Newline mask and scored grids of one packed image: base grid, then tiles (if any)."""
        newline = self._newline_mask(features)
        side = self._base_side
        grids = [(1, side, side)]
        n_rows = int(newline[side * side :].sum())
        n_tile_tokens = features.shape[0] - side * side - n_rows
        if n_tile_tokens > 0:
            grids.append((1, n_rows, n_tile_tokens // n_rows))
        return newline, grids

    def _video_layout(self, features: torch.Tensor, frames: int) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
        newline = self._newline_mask(features)
        pooled = math.ceil(self._base_side / 2)
        return newline, [(frames, pooled, pooled)]

    @staticmethod
    def _check_image_sizes(pixel_values: torch.Tensor, image_sizes) -> None:
        """One positive (height, width) per image of `pixel_values` (anyres tiling needs them)."""
        sizes = None if image_sizes is None else torch.as_tensor(image_sizes)
        fits = sizes is not None and sizes.ndim == 2 and sizes.shape == (pixel_values.shape[0], 2) and bool((sizes > 0).all())
        if not fits:
            raise InputMismatchError(
                f"`image_sizes` {None if sizes is None else sizes.tolist()} do not give a positive (height, width) for each "
                f"of the {pixel_values.shape[0]} images of pixel_values: pass the processor's full output"
            )

    def _spans(self, input_ids, token_id, modality, features, layouts) -> list[list[VisualSpan]]:
        spans: list[list[VisualSpan]] = [[] for _ in range(input_ids.shape[0])]
        lengths = [f.shape[0] for f in features]
        for (sample, positions), (newline, grids) in zip(
            assign_placeholders(input_ids, token_id, lengths, modality), layouts
        ):
            newline = newline.cpu()
            spans[sample].append(VisualSpan(modality, positions[~newline], grids, structural=positions[newline]))
        return spans

    def saliency_attention(self):
        """The attention of the SigLIP layer that gives the features (vision_feature_layer)."""
        return feature_layer_attention(self.model.model.vision_tower, self.config.vision_feature_layer)

    def _tiles_per_image(self, capture) -> list[int]:
        """Vision-encoder crops of each image, as get_image_features counts them."""
        sizes, counts = capture.inputs["image_sizes"], capture.inputs.get("batch_num_images")
        patching = [True] * len(sizes) if counts is None else [n == 1 for n in counts for _ in range(n)]
        return [
            image_size_to_num_patches(size, self.config.image_grid_pinpoints, self.config.vision_config.image_size)
            if patch
            else 1
            for size, patch in zip(sizes, patching)
        ]

    def token_saliency(self, capture):
        """Attention each patch receives (SigLIP has no [CLS]), mapped to the LLM tokens by the model's own
        packing: anyres tiles unpadded (and resized when too many), videos pooled; saliency and keys
        travel together as channels, so each token gets the interpolation of its patches."""
        inner = self.model.model
        cls_query = self.config.vision_feature_select_strategy == "default"
        result = {}
        for modality, hidden, _ in self.captured_calls(capture):
            received, keys = batched_attention(self.saliency_attention(), hidden, cls_query)
            channels = torch.cat([received.unsqueeze(-1), keys], dim=-1)  # (crops or frames, patches, 1 + d)
            if modality == "image":
                packed, _ = inner.pack_image_features(
                    list(channels.split(self._tiles_per_image(capture))),
                    capture.inputs["image_sizes"],
                    image_newline=None,
                    vision_aspect_ratio=self.config.vision_aspect_ratio,
                )
            else:
                videos = capture.pixel_shapes["video"][0]
                pooled = inner.apply_pooling(channels)
                packed = list(pooled.reshape(videos, -1, pooled.shape[-1]))
            result[modality] = [TokenSaliency(p[:, 0], p[:, 1:]) for p in packed]
        return result

    def encode_checked(self, inputs: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncodedBatch:
        inner, config = self.model.model, self.config
        image_id, video_id = config.image_token_id, config.video_token_id
        pixel_values = self.require(inputs, "pixel_values", input_ids, image_id, "image")
        pixel_values_videos = self.require(inputs, "pixel_values_videos", input_ids, video_id, "video")
        vision_kwargs = {
            "vision_feature_layer": config.vision_feature_layer,
            "vision_feature_select_strategy": config.vision_feature_select_strategy,
            "return_dict": True,
        }
        images: list[torch.Tensor] = []
        if pixel_values is not None:
            self._check_image_sizes(pixel_values, inputs.get("image_sizes"))
            images = list(
                inner.get_image_features(
                    pixel_values,
                    inputs["image_sizes"],
                    vision_aspect_ratio=config.vision_aspect_ratio,
                    batch_num_images=inputs.get("batch_num_images"),
                    **vision_kwargs,
                ).pooler_output
            )
        videos: list[torch.Tensor] = []
        if pixel_values_videos is not None:
            videos = list(inner.get_video_features(pixel_values_videos, **vision_kwargs).pooler_output)
        embeds = self.model.get_input_embeddings()(input_ids)
        embeds = self.scatter_features(embeds, input_ids, image_id, images, "image")
        embeds = self.scatter_features(embeds, input_ids, video_id, videos, "video")
        frames = pixel_values_videos.shape[1] if pixel_values_videos is not None else 0
        spans = merge_spans(
            self._spans(input_ids, image_id, "image", images, [self._image_layout(f) for f in images]),
            self._spans(input_ids, video_id, "video", videos, [self._video_layout(f, frames) for f in videos]),
        )
        return EncodedBatch(input_ids, embeds, attention_mask, self.text_position_ids(attention_mask), spans)
