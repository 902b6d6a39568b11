"""Benchmark smoke test on a tiny model (nothing is timed) and the analytical FLOPs formula."""

from __future__ import annotations

import json
from types import SimpleNamespace

from explainprune.bench import main
from explainprune.cli import build_parser
from explainprune.bench.flops import prefill_flops

ROW_KEYS = {"scorer", "keep_ratio", "vision_s", "scoring_s", "prefill_s", "prefill_ratio", "ttft_s", "decode_tok_s", "kv_bytes", "flops"}


def parse(*argv):
    return build_parser().parse_args(["bench", *argv])


def test_smoke_run_writes_the_report(tmp_path):
    json_path, markdown_path = tmp_path / "bench.json", tmp_path / "bench.md"
    args = parse(
        "--arch", "tiny-qwen2-vl", "--visual-tokens", "60", "--keep", "0.5,0.25",
        "--scorers", "layer0,fastv", "--fastv-layer", "1", "--repeats", "1", "--warmup", "0",
        "--decode-tokens", "2", "--json", str(json_path), "--markdown", str(markdown_path),
    )  # fmt: skip
    assert main(args, command="explainprune bench --arch tiny-qwen2-vl") == 0
    report = json.loads(json_path.read_text())
    assert {"arch", "dtype", "visual_tokens", "layers", "env", "rows"} <= set(report)
    assert (report["arch"], report["dtype"], report["layers"]) == ("tiny-qwen2-vl", "bf16", 2)
    assert abs(report["visual_tokens"] - 60) <= 5
    assert {"machine", "torch", "transformers", "threads"} <= set(report["env"])
    rows = {(row["scorer"], row["keep_ratio"]): row for row in report["rows"]}
    assert set(rows) == {(s, k) for s in ("layer0", "fastv") for k in (1.0, 0.5, 0.25)}
    for row in report["rows"]:
        assert ROW_KEYS <= set(row)
        assert all(value > 0 for key, value in row.items() if key.endswith("_s") and key != "scoring_s")
    for scorer in ("layer0", "fastv"):
        full, half, quarter = rows[scorer, 1.0], rows[scorer, 0.5], rows[scorer, 0.25]
        assert full["prefill_ratio"] == 1.0 and full["sequence_length"] == report["sequence_length"]
        assert full["sequence_length"] > half["sequence_length"] > quarter["sequence_length"]
        assert full["kv_bytes"] > half["kv_bytes"] > quarter["kv_bytes"]
        assert full["flops"] > half["flops"] > quarter["flops"]
        assert full["visual_tokens_kept"] == report["visual_tokens"] > half["visual_tokens_kept"]
    # the input-stage cache holds only kept tokens; FastV's layers < K still hold all of them
    assert rows["layer0", 0.5]["kv_bytes"] < rows["fastv", 0.5]["kv_bytes"] < rows["fastv", 1.0]["kv_bytes"]
    markdown = markdown_path.read_text()
    assert "`explainprune bench --arch tiny-qwen2-vl`" in markdown
    assert markdown.count("\n| layer0 |") == 3 and markdown.count("\n| fastv |") == 3


def test_llava_onevision_inputs_and_learned_scorer_run(capsys):
    args = parse(
        "--arch", "tiny-llava-onevision", "--visual-tokens", "80", "--keep", "0.5",
        "--scorers", "learned", "--repeats", "1", "--warmup", "0", "--decode-tokens", "1",
    )  # fmt: skip
    assert main(args, command="test") == 0
    table = capsys.readouterr().out
    assert "tiny-llava-onevision, bf16" in table
    assert [line.split()[:2] for line in table.splitlines() if line.lstrip().startswith("learned")] == [
        ["learned", "1.00"],
        ["learned", "0.50"],
    ]


def test_prefill_flops_counts_projections_attention_mlp_and_lm_head():
    config = SimpleNamespace(
        hidden_size=4, num_attention_heads=2, num_key_value_heads=1, head_dim=2, intermediate_size=8, vocab_size=10
    )
    projections = 4 * 2 * 2 * 2 + 4 * 1 * 2 * 2  # q, o: hidden x heads*head_dim; k, v: hidden x kv_heads*head_dim
    mlp = 3 * 4 * 8
    attention = 2 * 2 * 2 * 2 * (3 * 4 // 2)  # QK^T and AV over the 6 causal pairs of 3 tokens
    assert prefill_flops(config, [3]) == 2 * 3 * (projections + mlp) + attention + 2 * 4 * 10
    assert prefill_flops(config, [3, 3]) - prefill_flops(config, [3]) == 2 * 3 * (projections + mlp) + attention


def test_smoke_run_measures_saliency_scorers_and_dart(tmp_path):
    json_path = tmp_path / "bench.json"
    args = parse(
        "--arch", "tiny-qwen2.5-vl", "--visual-tokens", "60", "--keep", "0.25", "--scorers", "visionzip,dart",
        "--inllm-layer", "1", "--repeats", "1", "--warmup", "0", "--decode-tokens", "1", "--json", str(json_path),
    )  # fmt: skip
    assert main(args, command="explainprune bench --arch tiny-qwen2.5-vl") == 0
    rows = {(row["scorer"], row["keep_ratio"]): row for row in json.loads(json_path.read_text())["rows"]}
    visionzip, dart, full = rows["visionzip", 0.25], rows["dart", 0.25], rows["dart", 1.0]
    assert visionzip["scoring_s"] > 0 and visionzip["ratios"]["flops"] < 0.6
    # DART runs layer 0 on every token: its FLOPs fall less than those of an input-stage scorer.
    assert visionzip["ratios"]["flops"] < dart["ratios"]["flops"] < 1.0 and dart["sequence_length"] < full["sequence_length"]
