"""M-RoPE positions of the unpruned prompt, and how kept tokens carry theirs through vLLM.

vLLM hands a model its visual embeddings through the encoder cache, sliced per prefill chunk, and
nothing else travels with them. Each kept token's original (t, h, w) position ids therefore ride in
`POSITION_CHANNELS` extra columns of its embedding row, as base-256 digits: every digit is an
integer below 256, exact in bfloat16, float16 and float32 alike.
"""

from __future__ import annotations

import torch

DIGITS = 3  # positions below 256**3
POSITION_CHANNELS = 3 * DIGITS


def mrope_positions(length: int, visuals: list[tuple[int, int, int, int, float]], device=None) -> torch.Tensor:
    """(3, length) M-RoPE position ids of a sequence with its visual items laid out unpruned.

    `visuals` holds (offset, t, h, w, t_factor) per item, (t, h, w) the merged grid. Text counts up on
    all three axes; an item's tokens take base + (floor(t * t_factor), h, w) in raster order; text
    after an item resumes one past the item's largest position (Qwen2-VL's `get_rope_index`, with
    Qwen2.5-VL's t_factor = seconds per temporal patch * tokens per second).
    """
    parts, next_position, cursor = [], 0, 0
    for offset, t, h, w, t_factor in sorted(visuals):
        text = torch.arange(offset - cursor, device=device) + next_position
        parts.append(text.expand(3, -1))
        base = next_position + offset - cursor
        frames = (torch.arange(t, device=device, dtype=torch.float64) * t_factor).long()
        grid = torch.stack(
            [
                frames.view(t, 1, 1).expand(t, h, w),
                torch.arange(h, device=device).view(1, h, 1).expand(t, h, w),
                torch.arange(w, device=device).view(1, 1, w).expand(t, h, w),
            ]
        ).reshape(3, -1)
        parts.append(grid + base)
        next_position = base + int(grid.max()) + 1
        cursor = offset + t * h * w
    parts.append((torch.arange(length - cursor, device=device) + next_position).expand(3, -1))
    return torch.cat(parts, dim=1)


def encode_positions(positions: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(n, POSITION_CHANNELS) digits of (3, n) non-negative position ids, in `dtype`."""
    if int(positions.max()) >= 256**DIGITS:
        raise ValueError(f"position {int(positions.max())} does not fit {DIGITS} base-256 digits")
    digits = [(positions // 256**d) % 256 for d in range(DIGITS)]
    return torch.cat(digits, dim=0).T.to(dtype)


def decode_positions(channels: torch.Tensor) -> torch.Tensor:
    """(3, n) position ids from their (n, POSITION_CHANNELS) digits."""
    digits = channels.float().round().long().T.reshape(DIGITS, 3, -1)
    return sum(digits[d] * 256**d for d in range(DIGITS))
