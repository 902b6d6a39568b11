"""Dense auxiliary supervision of the visual tokens (training only, never shipped).

Each merged visual token (a 28x28-pixel cell) predicts the colour and shape of the object covering its
cell (or background), whether that object's centre lies in the cell, and the cell's own position. This
teaches the vision tower to put localised, linearly readable object identity into every token, which the
language model then has to find by attending to the right tokens.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from explainprune.data.synthetic import COLOURS, SHAPES

CELL = 28
MIN_COVER = 0.15  # fraction of a cell an object must cover to label it


def cell_targets(objects: list[dict], mask: np.ndarray) -> dict[str, torch.Tensor]:
    """Per-cell targets in the raster order of the merged visual tokens ("object": covering object or -1)."""
    rows, cols = mask.shape[0] // CELL, mask.shape[1] // CELL
    cells = mask[: rows * CELL, : cols * CELL].reshape(rows, CELL, cols, CELL).transpose(0, 2, 1, 3)
    cells = cells.reshape(rows * cols, CELL * CELL)
    covering = np.full(rows * cols, -1, dtype=np.int64)
    colour = np.zeros(rows * cols, dtype=np.int64)
    shape = np.zeros(rows * cols, dtype=np.int64)
    colour_ids = {c: i + 1 for i, c in enumerate(COLOURS)}
    shape_ids = {s: i + 1 for i, s in enumerate(SHAPES)}
    for cell, pixels in enumerate(cells):
        counts = np.bincount(pixels + 1, minlength=len(objects) + 1)[1:]
        if counts.size and counts.max() >= MIN_COVER * CELL * CELL:
            covering[cell] = int(counts.argmax())
            obj = objects[covering[cell]]
            colour[cell], shape[cell] = colour_ids[obj["colour"]], shape_ids[obj["shape"]]
    centre = np.zeros(rows * cols, dtype=np.float32)
    for obj in objects:
        if obj["bbox"] is None:  # hidden in this frame of a clip
            continue
        x0, y0, x1, y1 = obj["bbox"]
        row, col = min(int((y0 + y1) / 2 // CELL), rows - 1), min(int((x0 + x1) / 2 // CELL), cols - 1)
        centre[row * cols + col] = 1.0
    ys, xs = np.mgrid[0:rows, 0:cols]
    position = np.stack([(xs.ravel() + 0.5) / cols, (ys.ravel() + 0.5) / rows], axis=1).astype(np.float32)
    return {
        "colour": torch.from_numpy(colour),
        "shape": torch.from_numpy(shape),
        "centre": torch.from_numpy(centre),
        "position": torch.from_numpy(position),
        "object": torch.from_numpy(covering),
    }


def stack_targets(targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate per-image cell targets, numbering objects across the images (background stays -1)."""
    stacked = {key: torch.cat([target[key] for target in targets]) for key in targets[0]}
    offsets, offset = [], 0
    for target in targets:
        offsets.append(torch.full_like(target["object"], offset))
        offset += int(target["object"].max()) + 1
    stacked["object"] = torch.where(stacked["object"] >= 0, stacked["object"] + torch.cat(offsets), -1)
    return stacked


class CellHead(nn.Module):
    """Linear read-out of the cell targets from merged visual tokens."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.colour = nn.Linear(hidden_size, len(COLOURS) + 1)
        self.shape = nn.Linear(hidden_size, len(SHAPES) + 1)
        self.centre = nn.Linear(hidden_size, 1)
        self.position = nn.Linear(hidden_size, 2)

    def loss(self, tokens: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum of the cell losses over `tokens` (cells x hidden) with `stack_targets` targets; object cells'
        shapes count again, and so does each object's shape read from the mean of its cells' tokens."""
        tokens = tokens.float()
        on_object = targets["shape"] > 0
        colour_logits, shape_logits = self.colour(tokens), self.shape(tokens)
        objects = targets["object"][on_object]
        pooled = tokens.new_zeros(int(objects.max()) + 1, tokens.shape[1]).index_add_(0, objects, tokens[on_object])
        pooled = pooled / torch.bincount(objects, minlength=len(pooled)).clamp(min=1)[:, None].float()
        object_shape = torch.zeros(len(pooled), dtype=torch.long).index_copy_(0, objects, targets["shape"][on_object])
        present = object_shape > 0
        return (
            F.cross_entropy(colour_logits, targets["colour"])
            + F.cross_entropy(shape_logits, targets["shape"])
            + F.cross_entropy(shape_logits[on_object], targets["shape"][on_object])
            + F.cross_entropy(self.shape(pooled[present]), object_shape[present])
            + F.binary_cross_entropy_with_logits(self.centre(tokens).squeeze(-1), targets["centre"])
            + 10 * F.mse_loss(self.position(tokens), targets["position"])
        )

    @torch.no_grad()
    def accuracy(self, tokens: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, float]:
        """Read-out accuracy of colour and shape on the cells covered by an object."""
        tokens = tokens.float()
        on_object = targets["shape"] > 0
        return {
            name: (getattr(self, name)(tokens[on_object]).argmax(-1) == targets[name][on_object]).float().mean().item()
            for name in ("colour", "shape")
        }


def attention_loss(
    attentions: tuple[torch.Tensor, ...],
    query_positions: torch.Tensor,
    visual_positions: list[torch.Tensor],
    relevant_cells: list[list[torch.Tensor]],
    layers: tuple[int, ...],
) -> torch.Tensor:
    """Pull heads of each supervised layer at the answer-predicting position onto the queried objects' tokens.

    `relevant_cells[row][h]` are the cells head h must attend to (a spatial question gives each of its two
    objects a head of its own, so their positions reach the answer apart); the loss is -log of each head's
    total attention weight on its cells.
    """
    rows = torch.arange(len(query_positions), device=query_positions.device)
    # the answer rows of each layer, gathered once: indexing the full (rows, heads, L, L) weights per term would
    # make each term's backward fill a buffer of that size (most of an image-stage step's time)
    answer_rows = {layer: attentions[layer][rows, :, query_positions].float() for layer in layers}  # (rows, heads, L)
    terms = []
    for row, (positions, groups) in enumerate(zip(visual_positions, relevant_cells)):
        for head, cells in enumerate(groups):
            if cells.numel() == 0:
                continue
            for layer in layers:
                terms.append(-torch.log(answer_rows[layer][row, head][positions[cells]].sum() + 1e-6))
    return torch.stack(terms).mean() if terms else query_positions.new_zeros((), dtype=torch.float32)


def earlier_cells(targets: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """For the tokens of a clip (temporal patch-major), what each token must look back at in layer 0: an
    object's token at its own object in every earlier patch, or, in the patch where the object first
    appears, at the same cell of the previous patch (what was there before). Returns (queries, mask): the
    supervised token indices and a (queries, tokens) boolean mask of their targets; first-patch and
    background tokens are not supervised."""
    objects = torch.stack([target["object"] for target in targets])  # (patches, cells)
    patches, cells = objects.shape
    flat = objects.flatten()
    patch_of = torch.arange(patches).repeat_interleave(cells)
    queries = ((flat >= 0) & (patch_of > 0)).nonzero().squeeze(1)
    mask = (flat[queries, None] == flat[None, :]) & (patch_of[None, :] < patch_of[queries, None])
    first_shown = ~mask.any(1)
    mask[first_shown, queries[first_shown] - cells] = True
    return queries, mask


def track_attention_loss(weights: torch.Tensor, queries: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """-log of the attention mass each supervised video token puts on its `earlier_cells` targets, mean over
    the tokens. `weights`: one head's (tokens, tokens) attention among a clip's visual tokens. What a token
    reads back (the same object earlier, or the background it replaced) lets the decoder see what moved,
    what appeared and for how long an object has been shown, which the vision tower, run per temporal patch,
    cannot."""
    mass = (weights[queries].float() * mask).sum(-1)
    return -torch.log(mass + 1e-6).mean()
