"""Every harness takes a model the caller already placed on a device in a dtype (here cpu, bf16) and
uses it as it is: nothing reloaded, cast or moved, inputs brought to the model."""

from __future__ import annotations

import pytest
import torch
from conftest import load_tiny
from transformers import AutoModelForImageTextToText

from explainprune import Compressor
from explainprune.bench.inputs import synthetic_inputs
from explainprune.bench.measure import run_benchmark
from explainprune.bench.quality import MAX_NEW_TOKENS, evaluate
from explainprune.collect import collect
from explainprune.data import load_samples, make_inputs
from explainprune.embedded.evaluate import predict_answers
from explainprune.predictor import load_records

DATA = "synthetic:split=test,seed=2,n=3,size=112"


@pytest.fixture(scope="module")
def placed(tiny_dirs):
    """A fresh tiny Qwen2-VL, put in bf16 on the cpu by the caller."""
    model = AutoModelForImageTextToText.from_pretrained(tiny_dirs["qwen2-vl"], dtype=torch.bfloat16).to("cpu").eval()
    return model, load_tiny(tiny_dirs, "qwen2-vl")[1]


def unchanged(model) -> bool:
    return {(p.dtype, p.device.type) for p in model.parameters()} == {(torch.bfloat16, "cpu")}


def test_make_inputs_lands_on_the_models_device(placed):
    model, processor = placed
    inputs = make_inputs(processor, load_samples(DATA), device=model.device)
    assert {value.device for value in inputs.values()} == {model.device}


def test_quality_harness_at_keep_all_answers_as_model_generate(placed):
    model, processor = placed
    samples = load_samples(DATA)
    report = evaluate(model, processor, samples, ["layer0"], [1.0, 0.5], batch_size=1, progress=False, keep_answers=True)
    baseline = [r["prediction"] for r in report["answers"] if r["scorer"] == "baseline"]
    reference = []
    for sample in samples:
        inputs = make_inputs(processor, [sample], device=model.device)
        output = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        reference.append(processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0])
    assert baseline == reference
    assert [row["visual_tokens"] for row in report["rows"]] == [16.0, 8.0]
    assert unchanged(model)


def test_accuracy_harness_runs_on_the_placed_model(placed):
    model, processor = placed
    answers = predict_answers(model, processor, load_samples(DATA), batch_size=2, progress=False)
    assert len(answers) == 3 and unchanged(model)


def test_collect_uses_the_model_object(placed, tmp_path):
    model, processor = placed
    manifest = collect(model, processor, DATA, tmp_path / "pairs", explainer="rollout", only_correct=False, max_new_tokens=2)
    _, records = load_records(tmp_path / "pairs")
    assert manifest["records"] == len(records) == 3
    assert all(r.features.dtype == torch.float32 and r.features.device.type == "cpu" for r in records)
    assert unchanged(model)


def test_benchmark_runs_on_the_models_device_and_dtype(placed):
    model, _ = placed
    inputs = synthetic_inputs(model, 30, 8)
    result = run_benchmark(model, inputs, scorers=["layer0", "fastv"], keep_ratios=[0.5], repeats=1, warmup=0, decode_tokens=1,
                           scorer_options={"fastv": {"layer": 1}}, progress=lambda _: None)  # fmt: skip
    assert {(row["scorer"], row["keep_ratio"]) for row in result["rows"]} == {(s, k) for s in ("layer0", "fastv") for k in (1.0, 0.5)}
    assert unchanged(model)


def test_fastv_in_bf16_keeps_all_equal_to_model_generate(placed):
    model, processor = placed
    inputs = make_inputs(processor, load_samples(DATA), device=model.device)
    reference = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    fastv = Compressor(model, processor, scorer="fastv", keep_ratio=1.0, layer=1).generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(reference, fastv)
