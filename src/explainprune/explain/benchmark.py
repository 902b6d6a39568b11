"""Cost of GAE by row propagation vs. the full-matrix reference on a tiny model.

    python -m explainprune.explain.benchmark --family qwen2-vl --filler 0 200 600

Longer prompts (filler words in the question) grow the sequence length N, where the full
matrices cost O(N^3) time and O(N^2) memory per layer and answer token, the rows O(N^2) and O(N).
Time is the best of a few calls on one thread; peak memory is the peak of CPU tensor memory
allocated during one call, from the profiler's allocation events.
"""

from __future__ import annotations

import argparse
import time

import torch
from PIL import Image
from torch.profiler import ProfilerActivity, profile

from ..adapters import get_adapter
from ..data.prompting import user_message
from ..tiny import FAMILIES, build_tiny
from .answers import generate_answers
from .gae import gae, gae_full_matrix

METHODS = {"rows": gae, "full matrix": gae_full_matrix}
FILLER_WORD = "shapes "


def peak_tensor_memory_mb(call) -> float:
    """Peak MB of CPU tensor memory allocated by `call()` above what was allocated before it
    (from the profiler's allocation events; allocator caching and fragmentation not counted)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        call()
    allocated = peak = 0
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in profiler.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    for _, nbytes in events:
        allocated += nbytes
        peak = max(peak, allocated)
    return peak / 2**20


def benchmark_gae(family: str = "qwen2-vl", fillers=(0, 200, 600), answer_tokens: int = 4, repeats: int = 2) -> list[dict]:
    """Best-of-`repeats` time and peak tensor memory of both GAE versions for each filler length."""
    model, processor = build_tiny(family)
    adapter = get_adapter(model)
    image = Image.new("RGB", (224, 224), (180, 40, 40))
    rows = []
    for filler in fillers:
        question = FILLER_WORD * filler + "what colour is the circle?"
        text = processor.apply_chat_template(user_message(question), add_generation_prompt=True, tokenize=False)
        with torch.no_grad():
            encoded = adapter.encode(dict(processor(text=[text], images=[image], return_tensors="pt")))
        answers = generate_answers(model, encoded, answer_tokens)
        length = encoded.inputs_embeds.shape[1] + answers[0].numel()
        for method, explain in METHODS.items():
            memory = peak_tensor_memory_mb(lambda: explain(adapter, encoded, answers))
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                explain(adapter, encoded, answers)
                seconds.append(time.perf_counter() - start)
            rows.append({"N": length, "answer": answers[0].numel(), "method": method, "seconds": min(seconds), "peak_mb": memory})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'N':>6} {'answer':>6}  {'method':<12} {'seconds':>8} {'peak MB':>8}"]
    lines += [f"{r['N']:>6} {r['answer']:>6}  {r['method']:<12} {r['seconds']:>8.3f} {r['peak_mb']:>8.1f}" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="qwen2-vl", choices=FAMILIES)
    parser.add_argument("--filler", type=int, nargs="+", default=[0, 200, 600], help="filler words in the question")
    parser.add_argument("--answer-tokens", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(format_table(benchmark_gae(args.family, args.filler, args.answer_tokens, args.repeats)))


if __name__ == "__main__":
    main()
