"""The relevance predictor: a fully convolutional net from layer-0 attention to token relevance.

Architectures:
  paper  depthwise-separable 1-D convs over the token sequence.
  grid   depthwise-separable 3-D convs over each segment's (t, h, w) grid (for t == 1 only the
         kernel's central slice applies: a 2-D conv); segments are processed separately and put
         back in sequence order.
Both end in a 1x1 conv to one logit per token and a softmax over all tokens of the record.
The net reads `scoring.learned.span_features`: per head the row-mean and the row-peak layer-0
attention of the instruction rows, (n_tokens, 2 * n_heads). Input channels (`inputs`): `mean`, the
head-mean of the row-mean (1 channel; the paper's, default of `paper`); `heads`, the per-head row-mean
plus the head mean (n_heads + 1; default of `grid`); `heads+peaks`, those and the per-head row-peak
(2 * n_heads + 1).

Inputs are normalised per record (divided by the record's mean, then log1p), so the net sees the
same values whatever the token count. Batches are padded and masked: after every layer padding is
reset to zero, which is exactly the zero padding a record alone gets, so padding never changes
the predictions for real tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ExplainPruneError, MissingFileError
from .atomic import atomic_write, atomic_write_json
from .shards import Grid, grid_tokens

ARCHS = ("paper", "grid")
MODALITIES = ("image", "video")
DEFAULT_CHANNELS = (32, 64, 128, 256, 512)
DEFAULT_KERNEL_SIZE = {"paper": 5, "grid": 3}
INPUTS = ("mean", "heads", "heads+peaks")
DEFAULT_INPUTS = {"paper": "mean", "grid": "heads"}
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class PredictorMismatchError(ExplainPruneError):
    """A predictor is used with an MLLM or modality it was not trained for."""


def full_config(config: dict) -> dict:
    """Validate a predictor config and fill in default hidden sizes, kernel size and inputs."""
    missing = [key for key in ("arch", "n_heads", "fingerprint", "modality") if key not in config]
    if missing:
        raise ExplainPruneError(f"predictor config lacks {', '.join(missing)}")
    arch = config["arch"]
    if arch not in ARCHS:
        raise ExplainPruneError(f"unknown predictor arch {arch!r}; expected one of {ARCHS}")
    if config["modality"] not in MODALITIES:
        raise ExplainPruneError(f"unknown modality {config['modality']!r}; expected one of {MODALITIES}")
    if not isinstance(config["n_heads"], int) or config["n_heads"] < 1:
        raise ExplainPruneError(f"n_heads must be a positive int, got {config['n_heads']!r}")
    if not isinstance(config["fingerprint"], str):
        raise ExplainPruneError(f"fingerprint must be a string, got {config['fingerprint']!r}")
    channels = [int(c) for c in config.get("channels", DEFAULT_CHANNELS)]
    kernel_size = int(config.get("kernel_size", DEFAULT_KERNEL_SIZE[arch]))
    if not channels or min(channels) < 1:
        raise ExplainPruneError(f"channels must be positive ints, got {channels}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ExplainPruneError(f"kernel_size must be odd and positive, got {kernel_size}")
    inputs = config.get("inputs", DEFAULT_INPUTS[arch])
    if inputs not in INPUTS:
        raise ExplainPruneError(f"unknown predictor inputs {inputs!r}; expected one of {INPUTS}")
    return {**config, "channels": channels, "kernel_size": kernel_size, "inputs": inputs}


class ChannelNorm(nn.Module):
    """LayerNorm over the channel dim (dim 1) of each position; independent of other positions."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.movedim(1, -1)).movedim(-1, 1).contiguous()


class SeparableBlock(nn.Module):
    """Depthwise conv, pointwise conv, channel norm, GELU; positions outside the mask set to zero."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        conv = {1: nn.Conv1d, 3: nn.Conv3d}[spatial_dims]
        self.depthwise = conv(in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels)
        self.pointwise = conv(in_channels, out_channels, 1)
        self.norm = ChannelNorm(out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.norm(self.pointwise(self._depthwise(x)))) * mask

    def _depthwise(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5 and x.shape[2] == 1:
            # Single-frame boxes: only the kernel's central frame meets data, so run the much
            # faster 2-D convolution with that frame (identical result).
            conv = self.depthwise
            centre_frame = conv.weight[:, :, conv.kernel_size[0] // 2]
            frame = F.conv2d(x[:, :, 0], centre_frame, conv.bias, padding=conv.padding[1:], groups=conv.groups)
            return frame.unsqueeze(2)
        return self.depthwise(x)


class GridLayout:
    """Maps a padded token batch (B, N, C) to padded segment boxes (S, C, T, H, W) and back."""

    def __init__(self, grids: Sequence[Sequence[Grid]], n_tokens: int, device: torch.device):
        segments = [segment for record_grids in grids for segment in record_grids]
        self.batch_size, self.n_tokens = len(grids), n_tokens
        self.box_shape = tuple(max(segment[dim] for segment in segments) for dim in range(3))
        box_index, seq_index = [], []
        segment_index = 0
        for record_index, record_grids in enumerate(grids):
            start = 0
            for t, h, w in record_grids:
                coords = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
                count = t * h * w
                box_index.append(torch.stack([torch.full((count,), segment_index), *(c.flatten() for c in coords)]))
                seq_index.append(torch.stack([torch.full((count,), record_index), torch.arange(start, start + count)]))
                segment_index += 1
                start += count
        self.n_segments = segment_index
        self.box_index = tuple(torch.cat(box_index, dim=1).to(device))
        self.seq_index = tuple(torch.cat(seq_index, dim=1).to(device))

    def to_boxes(self, x: torch.Tensor) -> torch.Tensor:
        boxes = x.new_zeros(self.n_segments, *self.box_shape, x.shape[-1])
        boxes[self.box_index] = x[self.seq_index]
        return boxes.permute(0, 4, 1, 2, 3).contiguous()

    def to_sequence(self, boxes: torch.Tensor) -> torch.Tensor:
        sequence = boxes.new_zeros(self.batch_size, self.n_tokens)
        sequence[self.seq_index] = boxes[self.box_index]
        return sequence


def split_features(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2 * n_heads) features -> the per-head row-mean and the per-head row-peak, each (..., n_heads)."""
    n_heads = features.shape[-1] // 2
    return features[..., :n_heads], features[..., n_heads:]


def pad_features(features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (n_i, C) feature tensors into zero-padded (B, N, C) plus a (B, N) bool mask."""
    lengths = torch.tensor([f.shape[0] for f in features])
    padded = nn.utils.rnn.pad_sequence([f.float() for f in features], batch_first=True)
    mask = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
    return padded, mask


class Predictor(nn.Module):
    """Predicts each visual token's relevance (a distribution over the record's tokens)."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = full_config(config)
        arch, channels = self.config["arch"], self.config["channels"]
        self.spatial_dims = 1 if arch == "paper" else 3
        in_channels = {"mean": 1, "heads": self.n_heads + 1, "heads+peaks": 2 * self.n_heads + 1}[self.config["inputs"]]
        widths = [in_channels, *channels]
        self.blocks = nn.ModuleList(
            SeparableBlock(self.spatial_dims, c_in, c_out, self.config["kernel_size"])
            for c_in, c_out in zip(widths[:-1], widths[1:])
        )
        head_conv = nn.Conv1d if self.spatial_dims == 1 else nn.Conv3d
        self.head = head_conv(channels[-1], 1, 1)

    @property
    def n_heads(self) -> int:
        return self.config["n_heads"]

    @property
    def fingerprint(self) -> str:
        return self.config["fingerprint"]

    @property
    def modality(self) -> str:
        return self.config["modality"]

    def normalised_inputs(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, N, 2 * n_heads) features -> (B, N, C) scale-free inputs, zero on padding."""
        row_mean, row_peak = split_features(features)
        head_mean = row_mean.mean(dim=-1, keepdim=True)
        x = {
            "mean": [head_mean],
            "heads": [row_mean, head_mean],
            "heads+peaks": [row_mean, row_peak, head_mean],
        }[self.config["inputs"]]
        x = torch.cat(x, dim=-1)
        weights = mask.unsqueeze(-1).to(x.dtype)
        record_mean = (x * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp_min(1)
        return torch.log1p(x / record_mean.clamp_min(1e-12)) * weights

    def forward(self, features: torch.Tensor, mask: torch.Tensor, grids: Sequence[Sequence[Grid]]) -> torch.Tensor:
        """Padded (B, N, 2 * n_heads) features and (B, N) mask -> (B, N) log-probabilities (-inf on padding).

        As from `pad_features`: each record's tokens come first, its padding after them.
        """
        if features.ndim != 3 or features.shape[-1] != 2 * self.n_heads:
            raise ExplainPruneError(f"features must be (B, N, {2 * self.n_heads}), got {tuple(features.shape)}")
        lengths = mask.sum(dim=1).tolist()
        if len(grids) != len(lengths) or any(grid_tokens(g) != n for g, n in zip(grids, lengths)):
            raise ExplainPruneError(f"grids {list(grids)} do not cover the records' token counts {lengths}")
        x = self.normalised_inputs(features, mask)
        if self.spatial_dims == 1:
            x, x_mask = x.transpose(1, 2), mask.unsqueeze(1).to(x.dtype)
        else:
            layout = GridLayout(grids, features.shape[1], features.device)
            x = layout.to_boxes(x)
            x_mask = layout.to_boxes(mask.unsqueeze(-1).to(x.dtype))
        for block in self.blocks:
            x = block(x, x_mask)
        logits = self.head(x)[:, 0]
        if self.spatial_dims == 3:
            logits = layout.to_sequence(logits)
        return torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)

    @torch.no_grad()
    def predict(self, features: torch.Tensor, grids: Sequence[Grid]) -> torch.Tensor:
        """(n_tokens, 2 * n_heads) features of one record -> (n_tokens,) relevance probabilities."""
        if features.ndim != 2:
            raise ExplainPruneError(f"features must be (n_tokens, 2 * n_heads), got {tuple(features.shape)}")
        device = next(self.parameters()).device
        features = features.to(device, torch.float32).unsqueeze(0)
        mask = torch.ones(features.shape[:2], dtype=torch.bool, device=device)
        return self(features, mask, [grids])[0].exp()

    def check_compatible(self, fingerprint: str, modality: str) -> None:
        """Raise PredictorMismatchError unless this predictor was trained for this MLLM and modality."""
        if fingerprint != self.fingerprint or modality != self.modality:
            raise PredictorMismatchError(
                f"predictor was trained for model {self.fingerprint!r} ({self.modality}) "
                f"but is being used with model {fingerprint!r} ({modality}); "
                "train a predictor for this model and modality with `explainprune train`"
            )

    def save_pretrained(self, directory: str | Path) -> None:
        """Write model.safetensors and config.json into `directory` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda temp: save_file(state, temp))
        atomic_write_json(directory / CONFIG_NAME, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Predictor:
        """Load a predictor written by `save_pretrained`."""
        directory = Path(directory)
        if not directory.is_dir():
            raise MissingFileError(f"predictor directory {directory} does not exist")
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise MissingFileError(f"predictor directory {directory} has no {path.name}")
        try:
            config = json.loads(config_path.read_text())
            predictor = cls(config)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as error:
            raise ExplainPruneError(f"invalid predictor config {config_path}: {error}") from error
        try:
            state = load_file(weights_path)
        except Exception as error:
            raise ExplainPruneError(f"corrupt predictor weights {weights_path}: {error}") from error
        try:
            predictor.load_state_dict(state)
        except RuntimeError as error:
            raise ExplainPruneError(f"weights {weights_path} do not fit config {config_path}: {error}") from error
        predictor.check_finite(str(weights_path))
        # A float32 net whatever torch's default dtype is (serving engines set it to the LLM's).
        return predictor.float().eval()

    def check_finite(self, where: str = "the predictor") -> None:
        """Refuse NaN or infinite weights (a diverged training run): they would rank tokens arbitrarily."""
        bad = [name for name, tensor in self.state_dict().items() if not bool(torch.isfinite(tensor).all())]
        if bad:
            raise ExplainPruneError(
                f"{where} has NaN or infinite weights ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): "
                "retrain it (e.g. with a lower --lr)"
            )
