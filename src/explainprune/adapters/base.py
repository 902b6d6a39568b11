"""What every model-family adapter provides: visual spans, embeddings and position ids of a batch."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from ..errors import InputMismatchError, UnsupportedModelError
from ..vision_saliency import TokenSaliency, VisionCapture, capture_module_inputs

VISION_INPUT_NAMES = ("image_grid_thw", "video_grid_thw", "image_sizes", "batch_num_images")


@dataclass
class VisualSpan:
    """One image or video of one sample.

    `positions` are the sequence indices of its scored tokens in sequence order; `grids` the
    (t, h, w) segments they form, in order (sum of t*h*w == len(positions)); `structural` are
    positions that belong to the image but are never scored and always kept (LLaVA-OneVision's
    image_newline tokens).
    """

    modality: str
    positions: torch.Tensor
    grids: list[tuple[int, int, int]]
    structural: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    @property
    def num_tokens(self) -> int:
        return int(self.positions.numel())


@dataclass
class EncodedBatch:
    """A processed batch as the language model sees it, before any pruning."""

    input_ids: torch.Tensor  # (B, L)
    inputs_embeds: torch.Tensor  # (B, L, D)
    attention_mask: torch.Tensor  # (B, L), 1 for real tokens
    position_ids: torch.Tensor  # (B, L), or (3, B, L) for M-RoPE
    spans: list[list[VisualSpan]]  # per sample, in sequence order
    vision_capture: VisionCapture | None = None  # the saliency block's input, when asked for (vision_saliency.py)

    @property
    def batch_size(self) -> int:
        return self.inputs_embeds.shape[0]

    def visual_mask(self, sample: int) -> torch.Tensor:
        """Boolean (L,) mask of every visual position (scored and structural) of one sample."""
        mask = torch.zeros(self.inputs_embeds.shape[1], dtype=torch.bool)
        for span in self.spans[sample]:
            mask[span.positions] = True
            mask[span.structural] = True
        return mask

    def instruction_rows(self, sample: int) -> torch.Tensor:
        """Real text positions after the sample's last visual token: they attend to every visual token."""
        visual = self.visual_mask(sample)
        if not visual.any():
            return torch.zeros(0, dtype=torch.long)
        last_visual = int(visual.nonzero().max())
        real = self.attention_mask[sample].bool().cpu()
        rows = (real & ~visual).nonzero().flatten()
        return rows[rows > last_visual]


class Adapter:
    """Base class: one subclass per model family, registered by model_type in `adapters.ADAPTERS`."""

    family: str = ""
    model_types: tuple[str, ...] = ()

    def __init__(self, model):
        self.model = model
        self.config = model.config

    def encode(self, inputs: dict, capture_vision: bool = False) -> EncodedBatch:
        """The unpruned batch as the language model sees it, from the processor's output.

        `capture_vision` also keeps the input of the vision encoder's saliency attention module
        (`saliency_attention`), from which `vision_saliency.span_saliency` recomputes its attention.
        """
        input_ids = inputs["input_ids"]
        self.check_token_ids(input_ids)
        attention_mask = checked_attention_mask(input_ids, inputs.get("attention_mask"))
        if not capture_vision:
            return self.encode_checked(inputs, input_ids, attention_mask)
        pixels = {m: inputs.get(key) for m, key in (("image", "pixel_values"), ("video", "pixel_values_videos"))}
        capture = VisionCapture(
            modalities=[m for m, value in pixels.items() if value is not None],
            inputs={k: inputs[k] for k in VISION_INPUT_NAMES if inputs.get(k) is not None},
            pixel_shapes={m: tuple(value.shape) for m, value in pixels.items() if value is not None},
        )
        with capture_module_inputs(self.saliency_attention(), capture.calls):
            encoded = self.encode_checked(inputs, input_ids, attention_mask)
        encoded.vision_capture = capture
        return encoded

    # -- what each family implements -------------------------------------------------------
    def encode_checked(self, inputs: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncodedBatch:
        """`encode` once the token ids are known to fit the model and the mask is filled in."""
        raise NotImplementedError

    def saliency_attention(self) -> torch.nn.Module:
        """The vision attention module whose attention is the tokens' saliency (vision_saliency.py)."""
        raise UnsupportedModelError(f"vision saliency is not implemented for the {self.family or type(self).__name__} family")

    def token_saliency(self, capture: VisionCapture) -> dict[str, list[TokenSaliency]]:
        """Per modality, per image or video in batch order, the saliency and keys of its scored tokens."""
        raise UnsupportedModelError(f"vision saliency is not implemented for the {self.family or type(self).__name__} family")

    @staticmethod
    def captured_calls(capture: VisionCapture) -> list[tuple[str, torch.Tensor, dict]]:
        """(modality, module input, keyword arguments) of each captured call; every family's encode
        runs the vision encoder once for all images, then once for all videos."""
        if len(capture.calls) != len(capture.modalities):
            raise InputMismatchError(
                f"captured {len(capture.calls)} vision-encoder calls for a batch with {capture.modalities or 'no images or videos'}: "
                "encode the batch with capture_vision=True in one call"
            )
        return [
            (modality, args[0] if args else kwargs["hidden_states"], kwargs)
            for modality, (args, kwargs) in zip(capture.modalities, capture.calls)
        ]

    # -- shared -----------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """A readable identity of the architecture, e.g. 'qwen2-vl:d1536-l28-h12-kv2-v151936-vis1280x32'.

        Predictors record it; using one with a model of another fingerprint is refused.
        """
        text = getattr(self.config, "text_config", self.config)
        vision = self.config.vision_config
        vision_width = getattr(vision, "embed_dim", None) or vision.hidden_size
        vision_depth = getattr(vision, "depth", None) or vision.num_hidden_layers
        return (
            f"{self.family}:d{text.hidden_size}-l{text.num_hidden_layers}-h{text.num_attention_heads}"
            f"-kv{text.num_key_value_heads}-v{text.vocab_size}-vis{vision_width}x{vision_depth}"
        )

    @property
    def language_model(self):
        """The decoder stack (embed_tokens, layers, rotary_emb, norm)."""
        return self.model.model.language_model

    def apply_rotary(self, query, key, cos, sin):
        """The family's own rotary embedding function, taken from its attention module."""
        attention = self.language_model.layers[0].self_attn
        return inspect.getmodule(type(attention)).apply_rotary_pos_emb(query, key, cos, sin)

    def attention_inputs(
        self, layer_index: int, hidden_states: torch.Tensor, position_ids: torch.Tensor, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """What one sample's attention at decoder layer `layer_index` is made of: the rotated queries of
        `rows` (1, heads, R, d), the rotated keys of every position with each key/value head repeated
        over its query group (1, heads, L, d), and the softmax scale.

        `hidden_states` (1, L, D) is the layer's input; `position_ids` (1, L), or (3, 1, L) for M-RoPE.
        Other runtimes (the vLLM plugin) implement this from their own modules.
        """
        language_model = self.language_model
        layer = language_model.layers[layer_index]
        attention = layer.self_attn
        head_dim = attention.head_dim
        normed = layer.input_layernorm(hidden_states)
        cos, sin = language_model.rotary_emb(normed, position_ids)
        query = attention.q_proj(normed[:, rows]).view(1, len(rows), -1, head_dim).transpose(1, 2)
        key = attention.k_proj(normed).view(1, normed.shape[1], -1, head_dim).transpose(1, 2)
        query, _ = self.apply_rotary(query, query, cos[:, rows], sin[:, rows])
        key, _ = self.apply_rotary(key, key, cos, sin)
        return query, key.repeat_interleave(attention.num_key_value_groups, dim=1), attention.scaling

    def text_position_ids(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """1-D positions as generate() builds them: counting real tokens only."""
        positions = attention_mask.long().cumsum(-1) - 1
        return positions.masked_fill(attention_mask == 0, 0)

    def check_token_ids(self, input_ids: torch.Tensor) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.dtype.is_floating_point:
            described = f"a {input_ids.ndim}-D {input_ids.dtype} tensor" if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise InputMismatchError(
                f"input_ids must be a (batch, length) tensor of token ids, got {described}: pass the processor's "
                "output made with return_tensors='pt'"
            )
        vocab = self.model.get_input_embeddings().num_embeddings
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
            raise InputMismatchError(
                f"input_ids contain token id {int(input_ids.max())} (or a negative id) but the model's "
                f"vocabulary has {vocab} entries: were these inputs made by this model's processor?"
            )

    def scatter_features(
        self,
        embeds: torch.Tensor,
        input_ids: torch.Tensor,
        token_id: int,
        features: list[torch.Tensor],
        what: str,
    ) -> torch.Tensor:
        """Write visual features into the placeholder positions, as the model's forward does."""
        mask = input_ids == token_id
        n_placeholders = int(mask.sum())
        n_features = sum(f.shape[0] for f in features)
        if n_placeholders != n_features:
            raise InputMismatchError(
                f"the prompt has {n_placeholders} {what} placeholder tokens but the {what} inputs give "
                f"{n_features} features: the text and the {what}s were not processed together"
            )
        if not features:
            return embeds
        flat = torch.cat(features).to(embeds.device, embeds.dtype)
        return embeds.masked_scatter(mask.unsqueeze(-1).to(embeds.device), flat)

    def require(self, inputs: dict, key: str, input_ids: torch.Tensor, token_id: int, what: str):
        """The tensor `key`, or a clear error when the prompt has `what` tokens but no `key`."""
        value = inputs.get(key)
        if value is None and bool((input_ids == token_id).any()):
            raise InputMismatchError(
                f"the prompt contains {what} tokens but no `{key}` was given: pass the processor's "
                f"full output (e.g. model(**inputs))"
            )
        return value


NOT_TOGETHER = ": the text and the images or videos were not processed together (pass the processor's output of both)"


def checked_attention_mask(input_ids: torch.Tensor, attention_mask) -> torch.Tensor:
    """The attention mask, refused unless it is padding only: of input_ids' shape, 0/1, each row one
    run of real tokens. A single prompt may leave it out (all real); a batch may not (it is padded)."""
    if attention_mask is None:
        if input_ids.shape[0] > 1:
            raise InputMismatchError(
                "a batch of several prompts needs its attention_mask (which tokens are padding): pass the "
                "processor's full output"
            )
        return torch.ones_like(input_ids)
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
        shape = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask).__name__
        raise InputMismatchError(
            f"attention_mask of shape {shape} for input_ids of shape {tuple(input_ids.shape)}: pass the mask the "
            "processor made with these input_ids"
        )
    mask = attention_mask.cpu()
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise InputMismatchError("attention_mask must hold only 0 (padding) and 1 (real tokens)")
    real = mask.bool()
    counts = real.sum(-1)
    if not bool((counts > 0).all()):
        raise InputMismatchError(f"sample {int((counts == 0).nonzero()[0])} has no real token (its attention_mask is all 0)")
    index = torch.arange(mask.shape[1])
    first = torch.where(real, index, mask.shape[1]).amin(-1)
    last = torch.where(real, index, -1).amax(-1)
    if not bool((last - first + 1 == counts).all()):
        sample = int((last - first + 1 != counts).nonzero()[0])
        raise InputMismatchError(
            f"the attention_mask of sample {sample} has zeros between real tokens: it must mark padding only "
            "(at the start or the end of the row)"
        )
    return attention_mask


def assign_placeholders(
    input_ids: torch.Tensor, token_id: int, lengths: list[int], modality: str
) -> list[tuple[int, torch.Tensor]]:
    """Cut the placeholder positions of `token_id`, in batch order, into runs of `lengths`.

    Returns (sample, positions) per image or video, in the order of `lengths`.
    """
    runs: list[tuple[int, torch.Tensor]] = []
    remaining = iter(lengths)
    for sample, row in enumerate(input_ids.cpu()):
        positions = (row == token_id).nonzero().flatten()
        start = 0
        while start < positions.numel():
            count = next(remaining, None)
            if count is None:
                raise InputMismatchError(f"more {modality} tokens in the prompt than {modality}s in the inputs{NOT_TOGETHER}")
            chunk = positions[start : start + count]
            if chunk.numel() != count:
                raise InputMismatchError(
                    f"{modality} {len(runs) + 1} of the inputs needs {count} placeholder tokens but sample {sample} "
                    f"has {chunk.numel()} left{NOT_TOGETHER}"
                )
            runs.append((sample, chunk))
            start += count
    if next(remaining, None) is not None:
        raise InputMismatchError(f"more {modality}s in the inputs than {modality} placeholders in the prompt{NOT_TOGETHER}")
    return runs


def spans_from_grids(
    input_ids: torch.Tensor, token_id: int, modality: str, grids: list[tuple[int, int, int]]
) -> list[list[VisualSpan]]:
    """One span per grid, every placeholder scored (Qwen, LLaVA-1.5)."""
    spans: list[list[VisualSpan]] = [[] for _ in range(input_ids.shape[0])]
    lengths = [t * h * w for t, h, w in grids]
    for (sample, positions), grid in zip(assign_placeholders(input_ids, token_id, lengths, modality), grids):
        spans[sample].append(VisualSpan(modality, positions, [grid]))
    return spans


def merge_spans(*per_modality: list[list[VisualSpan]]) -> list[list[VisualSpan]]:
    """Merge per-modality span lists into one list per sample, in sequence order."""
    merged = [sum(group, []) for group in zip(*per_modality)]
    return [sorted(spans, key=lambda s: int(s.positions[0])) for spans in merged]
