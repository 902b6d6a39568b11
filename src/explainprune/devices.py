"""Devices and precisions: resolve the user's choice once, check it is there, wait for it when timing."""

from __future__ import annotations

import torch

from .errors import ExplainPruneError

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def default_device() -> torch.device:
    """cuda if available, else cpu."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device `device` names (None: `default_device()`), refused clearly when absent."""
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ExplainPruneError(f"--device {device!r} is not a torch device; use e.g. cpu, cuda or cuda:0") from None
    if resolved.type == "cpu":
        return resolved
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    if accelerator is None or accelerator.type != resolved.type:
        found = f"only {accelerator.type} and cpu" if accelerator is not None else "only cpu"
        raise ExplainPruneError(f"--device {device!r}: no {resolved.type} device on this machine ({found}); use --device cpu")
    count = torch.accelerator.device_count()
    if resolved.index is not None and resolved.index >= count:
        raise ExplainPruneError(
            f"--device {device!r}: this machine has {count} {resolved.type} device(s), "
            f"numbered 0 to {count - 1}"
        )
    return resolved


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """torch.bfloat16 for 'bf16' (also 'fp16', 'fp32'); a torch.dtype passes through."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in TORCH_DTYPES:
        raise ExplainPruneError(f"unknown dtype {dtype!r}; use one of {', '.join(TORCH_DTYPES)}")
    return TORCH_DTYPES[dtype]


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (around timed regions); nothing to wait for on the cpu."""
    device = torch.device(device)
    if device.type != "cpu":
        torch.accelerator.synchronize(device)
