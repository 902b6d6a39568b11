"""LLaVA-1.5-style models (also VILA1.5-like): one square grid of patch tokens per image, 1-D positions."""

from __future__ import annotations

import math

import torch

from ..vision_saliency import TokenSaliency, batched_attention, feature_layer_attention
from .base import Adapter, EncodedBatch, spans_from_grids


class LlavaAdapter(Adapter):
    family = "llava"
    model_types = ("llava",)

    def _grid(self, n_tokens: int, image_size=None) -> tuple[int, int, int]:
        if image_size is not None:
            patch = self.config.vision_config.patch_size
            return (1, int(image_size[0]) // patch, int(image_size[1]) // patch)
        side = math.isqrt(n_tokens)
        return (1, side, side) if side * side == n_tokens else (1, 1, n_tokens)

    def saliency_attention(self):
        """The attention of the layer that gives the features (CLIP: layer -2, as VisionZip reads it)."""
        return feature_layer_attention(self.model.model.vision_tower, self.config.vision_feature_layer)

    def token_saliency(self, capture):
        """[CLS] attention over the patches when the [CLS] token is dropped ('default' strategy, CLIP),
        else the attention each token receives (encoders without [CLS], e.g. SigLIP)."""
        result = {}
        for modality, hidden, _ in self.captured_calls(capture):
            cls_query = self.config.vision_feature_select_strategy == "default"
            received, keys = batched_attention(self.saliency_attention(), hidden, cls_query)
            result[modality] = [TokenSaliency(s, k) for s, k in zip(received, keys)]
        return result

    def encode_checked(self, inputs: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncodedBatch:
        image_id = self.config.image_token_id
        pixel_values = self.require(inputs, "pixel_values", input_ids, image_id, "image")
        image_sizes = inputs.get("image_sizes")
        features: list[torch.Tensor] = []
        if pixel_values is not None:
            kwargs = {"image_sizes": image_sizes} if image_sizes is not None else {}
            features = list(
                self.model.model.get_image_features(
                    pixel_values,
                    vision_feature_layer=self.config.vision_feature_layer,
                    vision_feature_select_strategy=self.config.vision_feature_select_strategy,
                    return_dict=True,
                    **kwargs,
                ).pooler_output
            )
        embeds = self.scatter_features(self.model.get_input_embeddings()(input_ids), input_ids, image_id, features, "image")
        sizes = list(image_sizes) if image_sizes is not None else [None] * len(features)
        grids = [self._grid(f.shape[0], size) for f, size in zip(features, sizes)]
        spans = spans_from_grids(input_ids, image_id, "image", grids)
        return EncodedBatch(input_ids, embeds, attention_mask, self.text_position_ids(attention_mask), spans)
