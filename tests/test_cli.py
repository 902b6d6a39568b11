"""The command line: help without torch, one option vocabulary, every model command on a chosen
device and dtype, and one clear line (exit 2, no traceback) for every bad value."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from explainprune import devices
from explainprune.bench.timing import timed
from explainprune.cli import build_parser, main
from explainprune.predictor.model import ARCHS


def test_help_imports_neither_torch_nor_transformers():
    code = "import sys; from explainprune.cli import main; sys.argv = ['explainprune', 'eval', '--help']\ntry: main()\nexcept SystemExit: pass\nprint(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("[]")
    assert "--attn-implementation {sdpa,eager,flash_attention_2}" in result.stdout


def test_one_vocabulary_for_shared_options():
    subcommands = build_parser()._subparsers._group_actions[0].choices
    with_model = ["demo", "eval", "collect", "bench", "lmms-eval"]
    for name in [*with_model, "train"]:
        actions = {a.dest: a for a in subcommands[name]._actions}
        assert actions["dtype"].choices == ("bf16", "fp16", "fp32") and actions["device"].default is None, name
        if name in with_model:
            assert actions["attn_implementation"].choices == ("sdpa", "eager", "flash_attention_2"), name
    for name in ["eval", "bench", "lmms-eval"]:
        args = build_parser().parse_args([name, "--keep", "1, 0.5", "--scorers", "layer0, uniform", *(["--tasks", "t", "--out", "o"] if name == "lmms-eval" else [])])
        assert (args.keep, args.scorers) == ([1.0, 0.5], ["layer0", "uniform"])


def test_train_arch_choices_are_the_predictor_architectures():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert {a.dest: a for a in train._actions}["arch"].choices == ARCHS


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--dtype", "fp64"], "explainprune eval: error: argument --dtype: invalid choice: 'fp64'"),
        (["eval", "--keep", "0,0.5"], "explainprune eval: error: argument --keep: keep ratios must be in (0, 1], e.g. 1,0.5,0.25, got '0,0.5'"),
        (["eval", "--keep", "1,0.5,0.5"], "explainprune eval: error: argument --keep: keep ratios must be distinct, got '1,0.5,0.5'"),
        (["eval", "--batch-size", "-1"], "explainprune eval: error: argument --batch-size: expected an integer >= 1, got '-1'"),
        (["eval", "--scorers", "layer0,attn"], "explainprune eval: error: unknown scorer 'attn'; known scorers:"),
        (["eval", "--scorers", "random", "--data", "synthetic:split=dev"], "explainprune eval: error: spec 'synthetic:split=dev': split must be one of"),
        (["eval", "--scorers", "random", "--data", "/nonexistent/q.jsonl"], "explainprune eval: error:"),
        (["eval", "--scorers", "random", "--device", "cuda:3", "--data", "synthetic:n=1"], "explainprune eval: error: --device 'cuda:3'"),
        (["eval", "--scorers", "random", "--device", "gpu", "--data", "synthetic:n=1"], "explainprune eval: error: --device 'gpu' is not a torch device; use e.g. cpu, cuda or cuda:0"),
        (["train", "--data", "d", "--out", "o", "--lr", "nan"], "explainprune train: error: argument --lr: expected a finite number > 0, got 'nan'"),
        (["train", "--data", "d", "--out", "o", "--val-fraction", "1"], "explainprune train: error: argument --val-fraction: expected a number in (0, 1), got '1'"),
        (["bench", "--repeats", "0"], "explainprune bench: error: argument --repeats: expected an integer >= 1, got '0'"),
        (["bench", "--visual-tokens", "-5"], "explainprune bench: error: argument --visual-tokens: expected an integer >= 1, got '-5'"),
        (["collect", "--model", "m", "--data", "d", "--out", "o", "--limit", "-1"], "explainprune collect: error: argument --limit: expected an integer >= 1, got '-1'"),
        (["demo", "--attn-implementation", "flash"], "explainprune demo: error: argument --attn-implementation: invalid choice: 'flash'"),
        (["embedded", "train", "--out", "o", "--steps", "x"], "explainprune embedded train: error: argument --steps: expected an integer >= 0, got 'x'"),
        (["embedded", "train", "--out", "o", "--lr", "inf"], "explainprune embedded train: error: argument --lr: expected a finite number > 0, got 'inf'"),
        (["lmms-eval", "--tasks", "t", "--out", "o", "--scorers", ","], "explainprune lmms-eval: error: argument --scorers: expected a comma-separated list of names, got ','"),
        (["nosuch"], "explainprune: error: argument command: invalid choice: 'nosuch'"),
    ],
)
def test_bad_values_get_one_clear_line(argv, message, capsys):
    code, err = run_cli(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(message)


def test_every_model_command_runs_on_cpu_in_bf16(tiny_dirs, tmp_path, capsys, monkeypatch):
    """eval, collect, train and bench with --device cpu --dtype bf16 (demo and lmms-eval: their own tests)."""
    loaded = []
    from explainprune import loading

    real_load = loading.load_pretrained
    monkeypatch.setattr(loading, "load_pretrained", lambda *a, **k: loaded.append(real_load(*a, **k)) or loaded[-1])
    bf16 = ["--device", "cpu", "--dtype", "bf16"]
    qwen = str(tiny_dirs["qwen2-vl"])
    report = tmp_path / "eval.json"
    data = "synthetic:split=test,seed=1,n=2,size=112"
    assert main(["eval", "--model", qwen, "--data", data, "--keep", "1,0.5", "--scorers", "layer0,uniform", "--json", str(report), *bf16]) == 0
    assert json.loads(report.read_text())["dtype"] == "bf16"
    assert main(["collect", "--model", qwen, "--data", "synthetic:split=train,n=12,size=112", "--out", str(tmp_path / "pairs"),
                 "--keep-incorrect", "--max-new-tokens", "2", *bf16]) == 0  # fmt: skip
    assert [(m.dtype, m.device.type) for m, _ in loaded] == [(torch.bfloat16, "cpu")] * 2
    assert main(["train", "--data", str(tmp_path / "pairs"), "--out", str(tmp_path / "predictor"), "--epochs", "1", "--val-fraction", "0.3", *bf16]) == 0
    metrics = json.loads((tmp_path / "predictor" / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1
    collected = json.loads((tmp_path / "pairs" / "manifest.json").read_text())
    assert metrics["targets"]["data"] == "synthetic:split=train,n=12,size=112"
    assert metrics["targets"]["explainer_options"] == collected["explainer_options"] and metrics["targets"]["records"] == collected["records"]
    bench = tmp_path / "bench.json"
    assert main(["bench", "--arch", "tiny-qwen2-vl", "--visual-tokens", "30", "--keep", "0.5", "--scorers", "layer0", "--repeats", "1",
                 "--warmup", "0", "--decode-tokens", "1", "--json", str(bench), *bf16]) == 0  # fmt: skip
    assert {k: json.loads(bench.read_text())[k] for k in ("device", "dtype")} == {"device": "cpu", "dtype": "bf16"}


def test_timed_regions_wait_for_the_device(monkeypatch):
    """Around a timed call on an accelerator the device is synchronised before and after; on the cpu
    there is nothing to wait for."""
    events = []
    monkeypatch.setattr(devices.torch.accelerator, "synchronize", lambda device=None: events.append(("sync", str(device))))
    seconds, result = timed(torch.device("cuda:0"), lambda: events.append("call") or 7)
    assert result == 7 and seconds >= 0
    assert events == [("sync", "cuda:0"), "call", ("sync", "cuda:0")]
    events.clear()
    timed(torch.device("cpu"), lambda: events.append("call"))
    assert events == ["call"]
