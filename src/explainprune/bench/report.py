"""The benchmark report: environment, a text table, a markdown table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch
import transformers

COLUMNS = (
    ("scorer", "scorer", "{}"),
    ("keep", "keep_ratio", "{:.2f}"),
    ("LLM tokens", "sequence_length", "{}"),
    ("vision s", "vision_s", "{:.3f}"),
    ("scoring s", "scoring_s", "{:.4f}"),
    ("scoring/prefill@1", "scoring_share", "{:.2%}"),
    ("prefill s", "prefill_s", "{:.3f}"),
    ("prefill ×", "prefill_ratio", "{:.3f}"),
    ("TTFT s", "ttft_s", "{:.3f}"),
    ("TTFT ×", ("ratios", "ttft_s"), "{:.3f}"),
    ("decode tok/s", "decode_tok_s", "{:.2f}"),
    ("decode ×", ("ratios", "decode_tok_s"), "{:.3f}"),
    ("KV MiB", "kv_bytes", "{}"),
    ("KV ×", ("ratios", "kv_bytes"), "{:.3f}"),
    ("TFLOPs", "flops", "{}"),
    ("FLOPs ×", ("ratios", "flops"), "{:.3f}"),
)


def environment() -> dict:
    """Machine, library versions, torch threads and the load average."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = f"{names[0]} x{len(names)}" if names else cpu
    return {
        "machine": f"{platform.machine()} {cpu}",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _cell(row: dict, key, template: str) -> str:
    value = row[key[0]][key[1]] if isinstance(key, tuple) else row[key]
    if value is None:
        return "-"
    if key == "kv_bytes":
        return f"{value / 2**20:.1f}"
    if key == "flops":
        return f"{value / 1e12:.3f}"
    return template.format(value)


def table_rows(report: dict) -> list[list[str]]:
    return [[_cell(row, key, template) for _, key, template in COLUMNS] for row in report["rows"]]


def summary(report: dict) -> str:
    """One line naming what was measured."""
    layers = report["layers"] if report["layers_cut"] is None else f"{report['layers']} (cut for a quick run)"
    return (
        f"{report['arch']}, {report['dtype']}, {report['visual_tokens']} visual tokens in a "
        f"{report['sequence_length']}-token prompt, {layers} LLM layers, medians of {report['repeats']} repeats "
        f"({report['decode_tokens']} decoded tokens); {report['env']['machine']}, {report['env']['threads']} threads, "
        f"torch {report['env']['torch']}, transformers {report['env']['transformers']}, load average "
        f"{report['env']['load_average']} at the start"
    )


def text_table(report: dict) -> str:
    headers = [title for title, _, _ in COLUMNS]
    rows = table_rows(report)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join([summary(report), *lines])


def markdown_table(report: dict) -> str:
    headers = [title for title, _, _ in COLUMNS]
    lines = [
        f"Produced by `{report['command']}`",
        "",
        summary(report) + ".",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    lines += [
        "",
        "× = ratio to keep 1.0 of the same scorer in the same run. TTFT = vision encoder + scoring + "
        "gather + LLM prefill (in-LLM pruners, FastV and DART: their prefill includes their scoring). FLOPs are analytical (LLM prefill).",
    ]
    return "\n".join(lines) + "\n"


def write_json(report: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=1) + "\n")


def write_markdown(report: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(markdown_table(report))
