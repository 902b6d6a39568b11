"""`mask-oracle`: an upper bound that needs labels. Keeps the tokens covering the objects the
question is about first, from the synthetic generator's masks;
in a clip, those objects in the frames the question is about them (a temporal patch scores the
highest of its frames). The rest of the budget goes in a coarse-to-fine spread over the grid
(`spread_order`), so it covers the whole scene rather than one corner or the other objects.

Not a method: it reads the answer's location from the data. The evaluation harness builds it per
batch with `MaskOracle.for_samples(samples)`; each sample must have one image or one clip (one grid).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.sample import Sample
from ..data.synthetic import question_relevance
from ..data.synthetic_video import clip_question_relevance
from ..errors import ExplainPruneError
from ..selection import Choice
from .base import Scorer, register


def cell_means(pixel_map: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(height * width,) raster means of an (H, W) map over a height x width grid of cells."""
    pixels = torch.as_tensor(pixel_map, dtype=torch.float32)[None, None]
    return F.adaptive_avg_pool2d(pixels, (height, width)).flatten()


def spread_order(grid: tuple[int, int, int]) -> torch.Tensor:
    """The raster indices of a (t, h, w) grid in a coarse-to-fine spread: cells on the even lattice of
    every axis first, then those of each finer level (the bits of each coordinate read from the lowest up,
    interleaved across the axes)."""
    bits = max(size - 1 for size in grid).bit_length()
    coordinates = torch.stack(torch.meshgrid(*[torch.arange(size) for size in grid], indexing="ij")).flatten(1)
    key = torch.zeros(coordinates.shape[1], dtype=torch.long)
    for bit in range(bits):  # the coordinates' lowest bits are the most significant bits of the key
        for axis in (1, 2, 0):  # h, w, then t
            key = key * 2 + ((coordinates[axis] >> bit) & 1)
    return torch.argsort(key, stable=True)


@register
class MaskOracle(Scorer):
    name = "mask-oracle"
    needs_labels = True

    def __init__(self, maps: list[np.ndarray] | None = None):
        self.maps = maps

    @classmethod
    def for_samples(cls, samples: list[Sample]) -> MaskOracle:
        """The oracle for one batch of synthetic samples (their question-object masks)."""
        try:
            return cls([
                clip_question_relevance(sample) if sample.modality == "video" else question_relevance(sample)
                for sample in samples
            ])  # fmt: skip
        except ValueError as error:
            raise ExplainPruneError(f"mask-oracle needs synthetic samples with object masks: {error}") from None

    def score(self, adapter, encoded):
        if self.maps is None or len(self.maps) != encoded.batch_size:
            raise ExplainPruneError(
                "mask-oracle needs one pixel relevance map per sample (MaskOracle.for_samples(batch)); "
                f"got {0 if self.maps is None else len(self.maps)} for {encoded.batch_size} samples"
            )
        scores = []
        for pixel_map, spans in zip(self.maps, encoded.spans):
            frames = pixel_map.reshape(-1, *pixel_map.shape[-2:])  # an image is one frame
            if len(spans) != 1 or len(spans[0].grids) != 1 or len(frames) % spans[0].grids[0][0]:
                raise ExplainPruneError("mask-oracle supports samples with one image or clip of one grid (Qwen, LLaVA-1.5)")
            steps, height, width = spans[0].grids[0]
            cells = torch.stack([cell_means(frame, height, width) for frame in frames])
            scores.append([cells.view(steps, -1, height * width).amax(1).flatten()])
        return scores

    def pick(self, scores, span, k):
        """The top `k` by score; among equal scores, the earliest in `spread_order` of the span's grid."""
        by_spread = spread_order(span.grids[0]).to(scores.device)
        order = by_spread[torch.argsort(scores.float()[by_spread], descending=True, stable=True)]
        return Choice(order[:k])
