"""Hostile command lines, every subcommand: a bad value exits 2 with one line
`explainprune CMD: error: ...` and no traceback; what an option accepts meets its contract.

Run in-process through `explainprune.cli.main`; nothing here loads a model for long (refusals
come before the work).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import image, load_tiny
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reference import small_predictor

from explainprune import options
from explainprune.cli import build_parser, main

# What each command needs so that parsing reaches the option under test (nothing here runs).
REQUIRED = {
    ("demo",): [],
    ("eval",): [],
    ("collect",): ["--model", "m", "--data", "synthetic:n=1", "--out", "never-created/out"],
    ("train",): ["--data", "d", "--out", "never-created/out"],
    ("bench",): [],
    ("export-task",): ["--data", "synthetic:n=1", "--out", "never-created/out"],
    ("lmms-eval",): ["--tasks", "t", "--out", "never-created/out"],
    ("embedded", "train"): ["--out", "never-created/out"],
}


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def finite(value) -> bool:
    return isinstance(value, float) and math.isfinite(value)


# The contract of every option type: what an accepted value satisfies.
CONTRACTS = {
    options.positive_int: lambda v: is_int(v) and v >= 1,
    options.non_negative_int: lambda v: is_int(v) and v >= 0,
    options.positive_float: lambda v: finite(v) and v > 0,
    options.non_negative_float: lambda v: finite(v) and v >= 0,
    options.fraction: lambda v: finite(v) and 0 < v < 1,
    options.keep_ratios: lambda v: bool(v) and len(set(v)) == len(v) and all(finite(r) and 0 < r <= 1 for r in v),
    options.comma_list: lambda v: bool(v) and all(name and name == name.strip() and "," not in name for name in v),
    options.output_dir: lambda v: isinstance(v, Path) and not v.is_file(),
    options.output_file: lambda v: isinstance(v, Path) and not v.is_dir(),
}


def typed_options():
    """(command words, option, type) of every option of every subcommand that has a type."""
    found = []

    def walk(parser, words):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*words, name])
            elif action.option_strings and action.type is not None:
                found.append((tuple(words), action.option_strings[-1], action.type))

    walk(build_parser(), [])
    return found


TYPED = typed_options()


def run(argv) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue()


def assert_one_line_refusal(code: int, stderr: str, command: str, fragment: str = "") -> None:
    """Exit 2; the last line of stderr (progress bars of model loading may precede it) is the only
    error line, ours, and names the problem."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert lines and lines[-1].startswith(f"explainprune {command}: error: "), stderr
    assert sum("error" in line.lower() for line in lines) == 1 and "Traceback" not in stderr, stderr
    assert fragment in lines[-1], stderr


def test_every_subcommand_is_covered_and_no_option_takes_a_bare_number():
    assert {words for words, _, _ in TYPED} == set(REQUIRED)
    bare = [(words, option) for words, option, kind in TYPED if kind in (int, float)]
    assert not bare, f"options without a range check: {bare}"


HOSTILE_TEXT = st.one_of(
    st.sampled_from(["", " ", "-1", "0", "-0", "1e400", "-1e400", "nan", "NaN", "inf", "-inf", "0x10", "1_000", "½",
                     "1,", ",", "1,1", "0.5,0.5", "1,0", "2", "1e-320", "ten", "None", "True", "/dev/null", "."]),
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from([(w, o, t) for w, o, t in TYPED if t in CONTRACTS]), text=HOSTILE_TEXT)
def test_a_value_is_either_within_its_options_contract_or_refused_in_one_line(case, text):
    words, option, kind = case
    try:
        value = kind(text)
    except (argparse.ArgumentTypeError, ValueError):
        value = None
    if value is not None:
        assert CONTRACTS[kind](value), f"{option} accepted {text!r} as {value!r}"
        return
    code, stderr = run([*words, *REQUIRED[words], f"{option}={text}"])
    assert_one_line_refusal(code, stderr, " ".join(words), f"{option}: ")  # argparse joins aliases: --a/--b


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A working directory with the hostile files the cases below name."""
    root = tmp_path_factory.mktemp("cli")
    (root / "a-file").write_text("x")
    (root / "fake.png").write_text("not an image")
    (root / "corrupt").mkdir()
    (root / "corrupt" / "manifest.json").write_text("not json")
    (root / "bad.jsonl").write_text(json.dumps({"image": "fake.png", "question": "q", "answer": "a"}) + "\n")
    (root / "null.jsonl").write_text(json.dumps({"image": "fake.png", "question": "q", "answer": None}) + "\n")
    (root / "empty.jsonl").write_text("\n")
    return root


REFUSALS = [
    # the findings of issue 10, as typed
    (["collect", "--model", "m", "--data", "synthetic:n=1", "--out", "o", "--limit", "-1"], "argument --limit: expected an integer >= 1"),
    (["eval", "--batch-size", "-1"], "argument --batch-size: expected an integer >= 1"),
    (["eval", "--keep", "1,0.5,0.5"], "argument --keep: keep ratios must be distinct"),
    (["bench", "--visual-tokens", "-5"], "argument --visual-tokens: expected an integer >= 1"),
    (["bench", "--repeats", "0"], "argument --repeats: expected an integer >= 1"),
    (["train", "--data", "d", "--out", "p", "--lr", "nan"], "argument --lr: expected a finite number > 0"),
    # data specs and files
    (["eval", "--data", "synthetic:n=-1"], "n must be at least 1"),
    (["eval", "--data", "imagenet:split=val"], "unknown source 'imagenet'"),
    (["eval", "--data", "synthetic:size=64"], "size must be between"),
    (["eval", "--data", "missing.jsonl"], "jsonl file not found: missing.jsonl"),
    (["eval", "--data", "empty.jsonl"], "empty.jsonl holds no samples"),
    (["eval", "--data", "bad.jsonl"], "bad.jsonl:1: fake.png is not an image file PIL can read"),
    (["eval", "--data", "null.jsonl"], "null.jsonl:1: answer must be a string or a number, got null"),
    (["collect", "--model", "embedded", "--data", "jsonl:", "--out", "o"], "jsonl needs a path"),
    (["collect", "--model", "m", "--data", "synthetic:n=1", "--out", "o"], "not 'embedded' and not a model directory"),
    # outputs
    (["eval", "--json", "."], "is a directory: give a file name"),
    (["eval", "--plot", "a-file/plot.png"], "cannot be created: a-file is a file"),
    (["eval", "--plot", "plot.xyz", "--data", "synthetic:n=1"], "name a file ending in one of"),
    (["bench", "--markdown", "."], "is a directory"),
    (["collect", "--model", "m", "--data", "synthetic:n=1", "--out", "a-file"], "a-file is a file, not a directory"),
    (["collect", "--model", "m", "--data", "synthetic:n=1", "--out", "corrupt"], "corrupt manifest"),
    (["train", "--data", "d", "--out", "a-file"], "a-file is a file, not a directory"),
    (["demo", "--out", "a-file"], "a-file is a file"),
    (["lmms-eval", "--tasks", "t", "--out", "a-file"], "a-file is a file"),
    (["embedded", "train", "--out", "a-file/sub"], "cannot be created: a-file is a file"),
    # inputs of train
    (["train", "--data", "missing", "--out", "p"], "data directory missing does not exist"),
    (["train", "--data", "a-file", "--out", "p"], "data directory a-file is a file"),
    (["train", "--data", "corrupt", "--out", "p"], "corrupt manifest"),
    # names, choices, devices
    (["eval", "--scorers", "layer0,atention"], "unknown scorer 'atention'"),
    (["eval", "--dtype", "fp64"], "argument --dtype: invalid choice"),
    (["collect", "--model", "m", "--data", "synthetic:n=1", "--out", "o", "--explainer", "lime"], "unknown explainer 'lime'"),
    (["collect", "--model", "m", "--data", "synthetic:n=1", "--out", "o", "--quantity", "weird"], "GAE quantity must be one of"),
    (["train", "--data", "d", "--out", "p", "--arch", "transformer"], "argument --arch: invalid choice"),
    (["bench", "--arch", "nonsense"], "unknown benchmark architecture 'nonsense'"),
    (["eval", "--model", "a-file"], "not 'embedded' and not a model directory"),
    (["eval", "--unknown-flag"], "unrecognized arguments: --unknown-flag"),
    (["embedded", "train", "--out", "o", "--steps"], "argument --steps: expected one argument"),
]


@pytest.mark.parametrize("argv, fragment", REFUSALS, ids=[" ".join(argv) for argv, _ in REFUSALS])
def test_a_bad_command_line_is_refused_in_one_line_before_any_work(files, monkeypatch, capsys, argv, fragment):
    monkeypatch.chdir(files)
    code = main(argv)
    command = " ".join(argv[:2]) if argv[0] == "embedded" else argv[0]
    assert_one_line_refusal(code, capsys.readouterr().err, command, fragment)


def test_runtime_refusals_of_a_model_directory_are_one_line(tiny_dirs, files, monkeypatch, capsys, tmp_path):
    """Mistakes only found once the model is there: predictor, device, a resumed directory."""
    monkeypatch.chdir(files)
    model_dir = str(tiny_dirs["qwen2-vl"])
    model, _ = load_tiny(tiny_dirs, "qwen2-vl")
    broken = small_predictor(model)
    with torch.no_grad():
        broken.head.weight.fill_(float("nan"))
    broken.save_pretrained(tmp_path / "nan-predictor")
    small_predictor(load_tiny(tiny_dirs, "llava")[0]).save_pretrained(tmp_path / "llava-predictor")
    data = ["--model", model_dir, "--data", "synthetic:n=1,size=112"]
    cases = [
        (["eval", *data, "--scorers", "learned", "--predictor", str(tmp_path / "nan-predictor")], "NaN or infinite weights"),
        (["eval", *data, "--scorers", "learned", "--predictor", str(tmp_path / "llava-predictor")], "predictor was trained for model 'llava:"),
        (["eval", *data, "--scorers", "learned", "--predictor", "missing"], "predictor directory missing does not exist"),
        (["eval", *data, "--scorers", "random", "--device", "quantum"], "is not a torch device"),
        (["bench", "--arch", "tiny-qwen2-vl", "--scorers", "fastv", "--fastv-layer", "9", "--repeats", "1", "--warmup", "0",
          "--decode-tokens", "1", "--visual-tokens", "16"], "fastv layer 9 does not exist"),  # fmt: skip
    ]
    if not torch.cuda.is_available():
        cases.append((["eval", *data, "--scorers", "random", "--device", "cuda"], "no cuda device on this machine"))
    for argv, fragment in cases:
        code = main(argv)
        assert_one_line_refusal(code, capsys.readouterr().err, argv[0], fragment)
    out = tmp_path / "collected"
    first = ["collect", *data, "--out", str(out), "--explainer", "rollout", "--keep-incorrect", "--max-new-tokens", "1"]
    assert main(first) == 0
    capsys.readouterr()
    other = ["collect", "--model", model_dir, "--data", "synthetic:n=1,size=112,seed=3", *first[5:]]
    assert_one_line_refusal(main(other), capsys.readouterr().err, "collect", "holds data collected with data=")


def gradient_16_bit(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.linspace(0, 65535, width * height).reshape(height, width).astype(np.uint16))


def test_a_jsonl_of_unusual_images_evaluates(tiny_dirs, tmp_path, capsys):
    """The loader's images reach the model: 16-bit, palette, alpha, CMYK and grey files all evaluate."""
    modes = {"L": image(40, 30).convert("L"), "P": image(30, 40).convert("P"), "RGBA": image(50, 50).convert("RGBA"),
             "CMYK": image(40, 40).convert("CMYK"), "I;16": gradient_16_bit(48, 32)}  # fmt: skip
    lines = []
    for index, (mode, picture) in enumerate(modes.items()):
        name = f"{index}.{'jpg' if mode == 'CMYK' else 'png'}"
        picture.save(tmp_path / name)
        lines.append({"image": name, "question": "what colour is the circle?", "answer": "red"})
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = tmp_path / "report.json"
    argv = ["eval", "--model", str(tiny_dirs["llava"]), "--data", str(tmp_path / "q.jsonl"), "--scorers", "uniform",
            "--keep", "1,0.5", "--json", str(report)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads(report.read_text())["n"] == len(modes)



def test_a_missing_optional_package_is_named_in_one_line(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if the lmms extra were not installed
    code = main(["export-task", "--data", "synthetic:n=1,size=112", "--out", "task"])
    assert_one_line_refusal(code, capsys.readouterr().err, "export-task", "datasets is not installed: install the extra")
