"""Vision saliency: the attention each visual token receives inside the vision encoder.

Saliency-based peers (VisionZip, VisPruner, SCOPE) rank tokens by the vision encoder's attention.
LLaVA-1.5's CLIP has a [CLS] token: its attention row at the feature layer (-2) is the saliency, as
published (VisionZip `CLIPVisionTower_VisionZip.forward`, VisPruner `CLIPVisionTower.feature_select`).
Encoders without [CLS] (Qwen2-VL, Qwen2.5-VL, SigLIP) use the attention each patch receives, mean
over heads and queries, in the last full-attention block (Qwen2.5-VL: the last of
`fullatt_block_indexes`, the others are windowed), as IDPruner's
`_recompute_attention_maps_for_all_images` (YF-T/IDPruner, pruning/strategies/utils.py) does; each
LLM token then sums the saliency of the patches it merges (Qwen's 2x2 groups, in raster order once
Qwen2.5-VL's window reordering is undone; LLaVA-OneVision's own packing and pooling).

The model keeps its attention implementation (sdpa, flash): the adapter captures the input of that
one attention module during the vision forward (`Adapter.encode(inputs, capture_vision=True)`), and
the probabilities are recomputed here from its q/k projections, as `attention.py` does for the LLM.
Each token also gets a "key" (head-mean key of that block, before any rotary embedding, averaged over
the merged patches): VisionZip's similarity metric for its contextual tokens.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .errors import ExplainPruneError

if TYPE_CHECKING:
    from .adapters import Adapter, EncodedBatch

QUERY_CHUNK = 1024  # query rows per softmax block: memory stays O(heads * chunk * n)


@dataclass
class TokenSaliency:
    """Per scored token of one span: `saliency` (n,) and `keys` (n, head_dim)."""

    saliency: torch.Tensor
    keys: torch.Tensor


@dataclass
class VisionCapture:
    """Inputs (args, kwargs) of the saliency attention module, one call per entry of `modalities`
    (images, then videos), with the processor inputs needed to map patches to LLM tokens."""

    modalities: list[str]
    inputs: dict
    pixel_shapes: dict[str, tuple[int, ...]]  # shape of pixel_values / pixel_values_videos per modality
    calls: list[tuple[tuple, dict]] = field(default_factory=list)


@contextmanager
def capture_module_inputs(module: torch.nn.Module, calls: list):
    """Record (args, kwargs) of every call of `module` while the context is open."""
    handle = module.register_forward_pre_hook(lambda _, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


def attention_received(query: torch.Tensor, key: torch.Tensor, scaling: float) -> torch.Tensor:
    """(heads, n, d) queries and keys of one attention segment -> (n,) attention each key receives,
    mean over heads and queries of softmax(q k^T * scaling)."""
    heads, n, _ = query.shape
    received = torch.zeros(n, dtype=torch.float32, device=query.device)
    for start in range(0, n, QUERY_CHUNK):
        logits = torch.matmul(query[:, start : start + QUERY_CHUNK].float(), key.float().transpose(1, 2)) * scaling
        received += torch.softmax(logits, dim=-1).sum(dim=(0, 1))
    return received / (heads * n)


def packed_qwen_attention(attention, hidden: torch.Tensor, cu_seqlens, position_embeddings):
    """Qwen vision attention over a packed sequence: (n_patches,) attention received within each
    cu_seqlens segment, and (n_patches, head_dim) head-mean keys before the rotary embedding."""
    length = hidden.shape[0]
    query, key, _ = attention.qkv(hidden).reshape(length, 3, attention.num_heads, -1).unbind(1)
    raw_keys = key.float().mean(dim=1)
    rotary = inspect.getmodule(type(attention)).apply_rotary_pos_emb_vision
    cos, sin = position_embeddings
    query, key = rotary(query, key, cos, sin)
    query, key = query.transpose(0, 1), key.transpose(0, 1)  # (heads, n, d)
    bounds = cu_seqlens.tolist()
    received = torch.cat(
        [attention_received(query[:, a:b], key[:, a:b], attention.scaling) for a, b in zip(bounds[:-1], bounds[1:])]
    )
    return received, raw_keys


def batched_attention(attention, hidden: torch.Tensor, cls_query: bool):
    """CLIP/SigLIP attention of a (n_images, L, C) batch: per image the attention of the [CLS] row
    over the L-1 patches (`cls_query`), else the attention each of the L tokens receives; and the
    head-mean keys of the same tokens."""
    images, length, _ = hidden.shape
    shape = (images, length, -1, attention.head_dim)
    query = attention.q_proj(hidden).view(shape).transpose(1, 2)
    key = attention.k_proj(hidden).view(shape).transpose(1, 2)
    keys = key.float().mean(dim=1)
    if cls_query:
        logits = torch.matmul(query[:, :, :1].float(), key.float().transpose(2, 3)) * attention.scale
        received = torch.softmax(logits, dim=-1).mean(dim=1)[:, 0, 1:]
        return received, keys[:, 1:]
    received = torch.stack([attention_received(q, k, attention.scale) for q, k in zip(query, key)])
    return received, keys


def feature_layer_attention(vision_tower, feature_layer) -> torch.nn.Module:
    """The attention module of the CLIP/SigLIP encoder layer whose output is
    `hidden_states[feature_layer]` (hidden_states[0] being the embeddings)."""
    layers = getattr(vision_tower, "vision_model", vision_tower).encoder.layers
    if not isinstance(feature_layer, int):
        raise ExplainPruneError(f"vision saliency needs one vision_feature_layer, the model concatenates {feature_layer}")
    index = feature_layer % (len(layers) + 1) - 1
    if index < 0:
        raise ExplainPruneError("vision saliency needs an encoder layer, but vision_feature_layer selects the embeddings")
    return layers[index].self_attn


@torch.no_grad()
def span_saliency(adapter: Adapter, encoded: EncodedBatch) -> list[list[TokenSaliency]]:
    """Per sample, per span, the vision saliency and keys of its scored tokens (in `span.positions` order)."""
    if encoded.vision_capture is None:
        raise ExplainPruneError(
            "this scorer needs the vision encoder's attention: encode with capture_vision=True "
            "(Compressor.encode does so for scorers with needs_vision_capture)"
        )
    per_modality = {modality: iter(items) for modality, items in adapter.token_saliency(encoded.vision_capture).items()}
    result = []
    for spans in encoded.spans:
        sample = []
        for span in spans:
            item = next(per_modality.get(span.modality, iter(())), None)
            if item is None or item.saliency.numel() != span.num_tokens:
                got = "none" if item is None else item.saliency.numel()
                raise ExplainPruneError(
                    f"vision saliency does not match a {span.modality} span of {span.num_tokens} tokens (got {got}): "
                    "was the batch encoded with capture_vision=True by this model's adapter?"
                )
            sample.append(item)
        result.append(sample)
    return result
