"""Speed benchmark: vision, scoring, prefill, TTFT, decode speed, KV cache and FLOPs per keep ratio."""

from .cli import benchmark, main
from .measure import run_benchmark

__all__ = ["benchmark", "main", "run_benchmark"]
