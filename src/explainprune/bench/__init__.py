"""Speed benchmark: vision, scoring, prefill, TTFT, decode speed, KV cache and FLOPs per keep ratio."""

from .cli import add_arguments, benchmark, main
from .measure import run_benchmark

__all__ = ["add_arguments", "benchmark", "main", "run_benchmark"]
