"""The lmms-eval model, task export and sweep: against the unpruned model, each sample alone, and
`explainprune eval` (the end-to-end agreement test through lmms-eval's own entry point is slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import image, load_tiny, video

try:
    import lmms_eval  # noqa: F401
except ImportError:
    if os.environ.get("CI"):  # `make install` installs it: CI must not skip these
        raise
    pytest.skip("lmms-eval is not installed (`make install` adds it)", allow_module_level=True)

from lmms_eval.api.instance import Instance
from transformers import AutoModelForImageTextToText

from explainprune import Compressor
from explainprune.bench.cli import untrained_predictor
from explainprune.cli import main
from explainprune.data import load_samples
from explainprune.integrations.lmms_eval.model import ExplainPruneChat, ExplainPruneSimple
from explainprune.integrations.lmms_eval.sweep import first_response
from explainprune.integrations.lmms_eval.tasks import EMBEDDED_TASK, TASKS_DIR, write_embedded_task

QUESTIONS = ["what colour is the circle?", "how many shapes are there?", "is there a square?"]
GREEDY = {"max_new_tokens": 5, "temperature": 0, "until": []}


@pytest.fixture
def bf16_qwen(tiny_dirs):
    """The tiny Qwen2-VL as an object the caller already put on a device and dtype (cpu, bf16)."""
    model = AutoModelForImageTextToText.from_pretrained(tiny_dirs["qwen2-vl"], dtype=torch.bfloat16).to("cpu").eval()
    return model, load_tiny(tiny_dirs, "qwen2-vl")[1]


def request(kind: str, arguments: tuple, doc_id: int) -> Instance:
    return Instance(kind, arguments, idx=0, metadata={"task": "t", "doc_id": doc_id, "repeats": 1})


def docs_with_images(n=3):
    return [{"image": image(56 + 28 * i, 84, seed=i), "question": QUESTIONS[i % 3]} for i in range(n)]


def simple_requests(docs, gen_kwargs=GREEDY):
    to_visual = lambda doc: [doc["image"]]  # noqa: E731
    return [request("generate_until", (d["question"], dict(gen_kwargs), to_visual, i, "t", "test"), i) for i, d in enumerate(docs)]


def chat_requests(docs, gen_kwargs=GREEDY):
    def to_messages(doc):
        return [{"role": "user", "content": [{"type": "image", "url": doc["image"]}, {"type": "text", "text": doc["question"]}]}]

    return [request("generate_until", ("", to_messages, dict(gen_kwargs), i, "t", "test"), i) for i, _ in enumerate(docs)]


def wrapper(cls, model, processor, docs, **options):
    lm = cls.around(model, processor, **options)
    lm.task_dict = {"t": {"test": docs}}
    return lm


def unpruned_answers(model, processor, docs, n=5):
    """Reference: model.generate on each sample alone, no pruning."""
    answers = []
    for doc in docs:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": doc["question"]}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[text], images=[doc["image"]], return_tensors="pt").to(model.device)
        output = model.generate(**inputs, max_new_tokens=n, do_sample=False)
        answers.append(processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0])
    return answers


@pytest.mark.parametrize("cls, requests_of", [(ExplainPruneSimple, simple_requests), (ExplainPruneChat, chat_requests)])
def test_keep_all_answers_equal_the_unpruned_model_on_a_caller_placed_bf16_model(bf16_qwen, cls, requests_of):
    model, processor = bf16_qwen
    docs = docs_with_images()
    lm = wrapper(cls, model, processor, docs, scorer="layer0", keep_ratio=1.0, batch_size=1)
    assert lm.generate_until(requests_of(docs)) == unpruned_answers(model, processor, docs)


@pytest.mark.parametrize("family", ["qwen2-vl", "llava-onevision", "llava"])
def test_a_batch_answers_as_each_sample_alone(tiny_dirs, family):
    model, processor = load_tiny(tiny_dirs, family)
    docs = docs_with_images()
    batched = wrapper(ExplainPruneChat, model, processor, docs, scorer="layer0", keep_ratio=0.5, batch_size=3)
    alone = wrapper(ExplainPruneChat, model, processor, docs, scorer="layer0", keep_ratio=0.5, batch_size=1)
    assert batched.generate_until(chat_requests(docs)) == alone.generate_until(chat_requests(docs))


def test_video_and_stop_strings(tiny_dirs):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    docs = [{"video": video(frames=4, seed=i), "question": "what happens?"} for i in range(2)]
    requests = [
        request("generate_until", (d["question"], dict(GREEDY), lambda doc: [doc["video"]], i, "t", "test"), i)
        for i, d in enumerate(docs)
    ]
    lm = wrapper(ExplainPruneSimple, model, processor, docs, scorer="uniform", keep_ratio=0.5, batch_size=2)
    answers = lm.generate_until(requests)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "what happens?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    for doc, answer in zip(docs, answers):
        inputs = processor(text=[text], videos=[doc["video"]], return_tensors="pt")
        reference = Compressor(model, processor, scorer="uniform", keep_ratio=0.5).generate(**inputs, max_new_tokens=5, do_sample=False)
        assert answer == processor.batch_decode(reference[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    stop = answers[0][1:3]
    stopped = lm.generate_until([request("generate_until", (docs[0]["question"], {**GREEDY, "until": [stop]}, lambda doc: [doc["video"]], 0, "t", "test"), 0)])
    assert stopped == [answers[0].split(stop)[0]]


def loglikelihood_requests(docs, continuations):
    to_visual = lambda doc: [doc["image"]]  # noqa: E731
    return [request("loglikelihood", (d["question"], c, to_visual, i, "t", "test"), i) for i, (d, c) in enumerate(zip(docs, continuations))]


def unpruned_nll(model, processor, doc, continuation) -> float:
    """Reference: the unpruned model on prompt + continuation tokenized together, mean NLL of the continuation."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": doc["question"]}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt + continuation], images=[doc["image"]], return_tensors="pt")
    length = processor(text=[prompt], images=[doc["image"]], return_tensors="pt")["input_ids"].shape[1]
    with torch.no_grad():
        logits = model(**inputs).logits[0, length - 1 : -1].float()
    targets = inputs["input_ids"][0, length:]
    return float(torch.nn.functional.cross_entropy(logits, targets))


@pytest.mark.parametrize("scorer, options", [("layer0", {}), ("fastv", {"layer": 1})])
def test_loglikelihood_at_keep_all_is_the_unpruned_loss(tiny_dirs, scorer, options):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    docs = docs_with_images()
    continuations = ["red", "two shapes", "yes"]
    lm = wrapper(ExplainPruneSimple, model, processor, docs, scorer=scorer, keep_ratio=1.0, batch_size=3, **options)
    results = lm.loglikelihood(loglikelihood_requests(docs, continuations))
    for result, doc, continuation in zip(results, docs, continuations):
        nll, greedy = result.text  # lmms-eval 0.7.3 passes a GenerationResult's text through unchanged
        assert nll == pytest.approx(unpruned_nll(model, processor, doc, continuation), rel=1e-4)
        assert isinstance(greedy, bool)


def test_loglikelihood_after_pruning_matches_the_pruned_generation(tiny_dirs):
    """The model's own greedy continuation under pruning is 'greedy', and its NLL is the one the
    pruned generation's logits give (for continuations whose text tokenizes back to the same ids)."""
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    docs = docs_with_images()
    compressor = Compressor(model, processor, scorer="layer0", keep_ratio=0.5)
    continuations, references, round_trips = [], [], []
    for doc in docs:
        prepared = compressor.prepare(**make_inputs_for(processor, doc))
        output = model.generate(**prepared, max_new_tokens=3, do_sample=False, output_logits=True, return_dict_in_generate=True)
        tokens = output.sequences[0]
        text = processor.decode(tokens, skip_special_tokens=False)
        continuations.append(text)
        references.append(float(torch.nn.functional.cross_entropy(torch.stack(output.logits, dim=1)[0].float(), tokens)))
        round_trips.append(processor.tokenizer(text, add_special_tokens=False).input_ids == tokens.tolist())
    assert any(round_trips)  # random weights may emit partial UTF-8 bytes, which do not decode back
    lm = wrapper(ExplainPruneSimple, model, processor, docs, scorer="layer0", keep_ratio=0.5, batch_size=3)
    results = lm.loglikelihood(loglikelihood_requests(docs, continuations))
    for result, reference, round_trip in zip(results, references, round_trips):
        if round_trip:
            nll, greedy = result.text
            assert greedy is True
            assert nll == pytest.approx(reference, rel=1e-4)


def make_inputs_for(processor, doc):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": doc["question"]}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(text=[text], images=[doc["image"]], return_tensors="pt")


def test_the_entry_point_gives_both_interfaces_without_importing_torch_first():
    from lmms_eval.models import get_model

    assert get_model("explainprune") is ExplainPruneChat
    assert get_model("explainprune", force_simple=True) is ExplainPruneSimple
    code = "import sys, explainprune.integrations.lmms_eval as m; m.manifests(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_unknown_model_argument_is_refused_clearly():
    with pytest.raises(ValueError, match="keep: not an option of the explainprune model; it takes: pretrained, scorer, keep_ratio"):
        ExplainPruneChat(pretrained="embedded", keep=0.5)


def test_export_task_round_trips_the_samples(tmp_path, capsys):
    from datasets import load_dataset

    spec = "synthetic:split=test,seed=4,n=3,size=112"
    out = tmp_path / "moved" / "my_task"
    assert main(["export-task", "--data", spec, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["my_task.yaml", "test.parquet"]
    config = (out / "my_task.yaml").read_text()
    assert "task: my_task" in config and "test: test.parquet" in config and "metric: exact_match" in config
    rows = load_dataset("parquet", data_files={"test": str(out / "test.parquet")})["test"]
    for row, sample in zip(rows, load_samples(spec)):
        assert (row["id"], row["question"], row["answer"]) == (sample.id, sample.question, sample.answer)
        assert np.array_equal(np.asarray(row["image"]), np.asarray(sample.image))
    assert main(["export-task", "--data", spec, "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("exists and is not an empty folder; choose a new folder")


def test_the_shipped_task_is_what_write_embedded_task_writes(tmp_path):
    import pyarrow.parquet as pq

    shipped = TASKS_DIR / EMBEDDED_TASK
    fresh = write_embedded_task(tmp_path / EMBEDDED_TASK).parent
    for name in (f"{EMBEDDED_TASK}.yaml", "utils.py"):
        assert (shipped / name).read_text() == (fresh / name).read_text()
    assert pq.read_table(shipped / "test.parquet").equals(pq.read_table(fresh / "test.parquet"))


def test_the_shipped_task_redraws_the_eval_images():
    sys.path.insert(0, str(TASKS_DIR / EMBEDDED_TASK))
    try:
        from utils import scene_image
    finally:
        sys.path.pop(0)
    import pyarrow.parquet as pq

    rows = pq.read_table(TASKS_DIR / EMBEDDED_TASK / "test.parquet").slice(0, 3).to_pylist()
    for row, sample in zip(rows, load_samples("synthetic:split=test,seed=0,n=3,size=224")):
        assert row["id"] == sample.id and row["answer"] == sample.answer
        assert np.array_equal(np.asarray(scene_image(row)[0]), np.asarray(sample.image))


@pytest.mark.slow  # lmms-eval indexes its ~2000 task files first (~10 s)
def test_sweep_reports_a_failed_run_and_exits_1(tiny_dirs, tmp_path, capsys):
    """The tiny model has no trained predictor: the learned runs fail, the baseline and uniform run."""
    out = tmp_path / "sweep"
    code = main([
        "lmms-eval", "--model", str(tiny_dirs["qwen2-vl"]), "--tasks", EMBEDDED_TASK, "--include-path", str(TASKS_DIR),
        "--keep", "1,0.5", "--scorers", "uniform,learned", "--limit", "4", "--batch-size", "4", "--out", str(out),
        "--device", "cpu", "--dtype", "bf16",
    ])  # fmt: skip
    assert code == 1
    printed = capsys.readouterr().out
    assert "run learned_keep0.5 failed: the learned scorer needs a predictor trained for this model" in printed
    report = json.loads((out / "results.json").read_text())
    assert report["failed_runs"] == ["learned_keep0.5"] and report["dtype"] == "bf16"
    rows = report["tasks"][EMBEDDED_TASK]["rows"]
    assert [(r["scorer"], r["keep_ratio"]) for r in rows] == [("uniform", 1.0), ("uniform", 0.5)]
    assert (out / "runs" / "learned_keep0.5.error.txt").read_text().startswith("Traceback")


@pytest.mark.slow
def test_sweep_gives_the_predictor_to_every_scorer_that_takes_one(tiny_dirs, tmp_path, capsys):
    """--predictor reaches learned-mmr too (it used to reach `learned` only), and the baseline run ignores it."""
    model, _ = load_tiny(tiny_dirs, "qwen2-vl")
    untrained_predictor(model).save_pretrained(tmp_path / "predictor")
    out = tmp_path / "sweep"
    code = main([
        "lmms-eval", "--model", str(tiny_dirs["qwen2-vl"]), "--tasks", EMBEDDED_TASK, "--include-path", str(TASKS_DIR),
        "--keep", "1,0.5", "--scorers", "learned-mmr", "--predictor", str(tmp_path / "predictor"), "--limit", "4",
        "--batch-size", "4", "--out", str(out), "--device", "cpu",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    report = json.loads((out / "results.json").read_text())
    assert report["failed_runs"] == []
    rows = report["tasks"][EMBEDDED_TASK]["rows"]
    assert [(r["scorer"], r["keep_ratio"]) for r in rows] == [("learned-mmr", 1.0), ("learned-mmr", 0.5)]


def lmms_eval_responses(out_dir, scorer: str, keep: float, n: int, simple: bool) -> dict[int, dict]:
    """Run lmms-eval's own command line on the shipped task; per document its logged sample."""
    command = [
        sys.executable, "-m", "lmms_eval", "--model", "explainprune",
        "--model_args", f"pretrained=embedded,scorer={scorer},keep_ratio={keep},device=cpu,dtype=fp32",
        "--tasks", EMBEDDED_TASK, "--include_path", str(TASKS_DIR), "--limit", str(n), "--batch_size", "16",
        "--log_samples", "--output_path", str(out_dir), *(["--force_simple"] if simple else []),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run(command, check=True, env=env, capture_output=True)
    (samples_file,) = out_dir.rglob(f"*_samples_{EMBEDDED_TASK}.jsonl")  # lmms-eval exits 0 even when a run fails
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    return {sample["doc_id"]: sample for sample in samples}


@pytest.mark.slow
def test_lmms_eval_entry_point_agrees_with_explainprune_eval_answer_for_answer(tmp_path):
    """The embedded task through `python -m lmms_eval` (chat and simple interfaces) gives, question for
    question, the answers and exact-match scores `explainprune eval` gives on the same scenes."""
    n = 48
    answers_path = tmp_path / "answers.jsonl"
    assert main([
        "eval", "--data", f"synthetic:split=test,seed=0,n={n},size=224", "--keep", "1,0.25", "--scorers", "learned,layer0",
        "--batch-size", "16", "--device", "cpu", "--answers", str(answers_path),
    ]) == 0  # fmt: skip
    records = [json.loads(line) for line in answers_path.read_text().splitlines()]
    for scorer, keep, simple in [("learned", 1.0, False), ("learned", 0.25, False), ("layer0", 1.0, True), ("layer0", 0.25, True)]:
        expected = [r for r in records if (r["scorer"], r["keep_ratio"]) == (("baseline", 1.0) if keep == 1.0 else (scorer, keep))]
        logged = lmms_eval_responses(tmp_path / f"{scorer}-{keep}", scorer, keep, n, simple)
        assert sorted(logged) == list(range(n))
        for doc_id, record in enumerate(expected):
            assert first_response(logged[doc_id]) == record["prediction"], (scorer, keep, doc_id)
            assert logged[doc_id]["exact_match"] == float(record["correct"]), (scorer, keep, doc_id)
