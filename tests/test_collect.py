"""`collect`: records, correctness filtering, and resuming after an interruption."""

import json

import pytest
import torch
from conftest import image, load_tiny

from explainprune.adapters import get_adapter
from explainprune.cli import build_parser
from explainprune.collect import collect, main
from explainprune.data import make_inputs
from explainprune.data.specs import load_samples
from explainprune.explain import gae, gae_variant, generate_answers, preprocess_target
from explainprune.predictor import load_records
from explainprune.run_configs import CollectConfig

N_SAMPLES = 7
WRONG = {2, 5}


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def qwen(tiny_dirs):
    return load_tiny(tiny_dirs, "qwen2-vl")


@pytest.fixture(scope="module")
def dataset(qwen, tmp_path_factory):
    """A JSONL file whose answers are the tiny model's own, except for the samples in WRONG."""
    model, processor = qwen
    directory = tmp_path_factory.mktemp("data")
    lines = []
    for index in range(N_SAMPLES):
        image(56, 56, seed=index).save(directory / f"{index}.png")
        lines.append({"id": f"s{index}", "image": f"{index}.png", "question": "what colour is it?", "answer": "?"})
    path = directory / "questions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    samples = load_samples(str(path))
    with torch.no_grad():
        encoded = get_adapter(model).encode(dict(make_inputs(processor, samples)))
    predictions = processor.tokenizer.batch_decode(generate_answers(model, encoded, 3), skip_special_tokens=True)
    for index, line in enumerate(lines):
        line["answer"] = "certainly wrong" if index in WRONG else predictions[index]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def run(qwen, dataset, out_dir, on_batch=None, **options):
    model, processor = qwen
    config = CollectConfig(model="tiny-qwen2-vl", data=dataset, **{"batch_size": 2, "max_new_tokens": 3, "shard_size": 2, **options})
    return collect(config, out_dir, model, processor, on_batch)


def test_records_hold_features_targets_and_grids_of_correct_answers(qwen, dataset, tmp_path):
    manifest = run(qwen, dataset, tmp_path)
    _, records = load_records(tmp_path)
    assert sorted(r.id for r in records) == [f"s{i}#0" for i in range(N_SAMPLES) if i not in WRONG]
    assert manifest["dropped"] == {"incorrect": len(WRONG)}
    assert manifest["records"] == N_SAMPLES - len(WRONG)
    assert manifest["fingerprint"] == get_adapter(qwen[0]).fingerprint
    assert (manifest["explainer"], manifest["modality"], manifest["data"]) == ("gae", "image", dataset)
    for record in records:
        assert record.grids == ((1, 2, 2),)
        assert record.features.shape == (4, 2 * manifest["n_heads"]) and (record.features > 0).all()  # row-mean, row-peak
        assert abs(float(record.target.sum()) - 1) < 1e-5
        assert int((record.target == 0).sum()) == 2


def test_interrupted_collection_resumes_without_losing_or_repeating_samples(qwen, dataset, tmp_path):
    reference_dir, out_dir = tmp_path / "reference", tmp_path / "resumed"
    run(qwen, dataset, reference_dir)
    _, reference = load_records(reference_dir)

    run(qwen, dataset, out_dir, limit=3)
    finished = []

    def stop_after_two_batches(ids):
        finished.append(ids)
        if len(finished) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        run(qwen, dataset, out_dir, on_batch=stop_after_two_batches)
    assert [len(ids) for ids in finished] == [2, 2]  # samples 0-2 were skipped
    assert not list(out_dir.glob(".*"))  # no temp file left behind
    manifest = run(qwen, dataset, out_dir)

    _, records = load_records(out_dir)
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(r.id for r in reference)
    assert manifest["dropped"] == {"incorrect": len(WRONG)}
    by_id = {r.id: r for r in reference}
    for record in records:
        torch.testing.assert_close(record.features, by_id[record.id].features)
        torch.testing.assert_close(record.target, by_id[record.id].target, rtol=1e-4, atol=1e-6)


def test_command_line_collects_from_a_model_directory(tiny_dirs, dataset, tmp_path):
    args = ["collect", "--model", str(tiny_dirs["llava"]), "--data", dataset, "--out", str(tmp_path / "out"), "--limit", "2",
            "--explainer", "rollout", "--keep-incorrect", "--max-new-tokens", "2"]  # fmt: skip
    main(build_parser().parse_args(args))
    manifest, records = load_records(tmp_path / "out")
    assert [r.id for r in records] == ["s0#0", "s1#0"]
    assert manifest["explainer"] == "rollout" and manifest["fingerprint"].startswith("llava:")
    assert all(r.grids == ((1, 4, 4),) for r in records)


def test_unknown_explainer_is_refused(qwen, dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown explainer 'lime'"):
        run(qwen, dataset, tmp_path, explainer="lime")


def test_command_line_gae_options_reach_the_targets_and_the_manifest(qwen, dataset, tmp_path):
    model, processor = qwen
    args = build_parser().parse_args(["collect", "--model", "unused", "--data", dataset, "--out", str(tmp_path), "--limit", "2",
                              "--keep-incorrect", "--variant", "paper", "--heads", "max"])  # fmt: skip
    options = {name: getattr(args, name) for name in ("variant", "quantity", "gradient", "heads", "answer_tokens")}
    manifest = collect(CollectConfig(model="tiny-qwen2-vl", data=dataset, limit=2, keep_incorrect=True, **options), tmp_path, model, processor)
    variant = gae_variant("paper", heads="max")
    assert manifest["explainer_options"] == variant.as_dict()
    samples = load_samples(dataset)[:2]
    with torch.no_grad():
        encoded = get_adapter(model).encode(dict(make_inputs(processor, samples)))
    answers = generate_answers(model, encoded, 8, keep_stop=True)
    expected = gae(get_adapter(model), encoded, answers, variant)
    default = gae(get_adapter(model), encoded, answers)
    _, records = load_records(tmp_path)
    for record, values, other in zip(sorted(records, key=lambda r: r.id), expected, default):
        torch.testing.assert_close(record.target, preprocess_target(values[0]), rtol=1e-4, atol=1e-6)
        assert not torch.allclose(record.target, preprocess_target(other[0]), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="variant='paper', heads='max', not variant='default', heads=None"):
        run(qwen, dataset, tmp_path, variant="default", limit=2, keep_incorrect=True, max_new_tokens=8)


def test_gae_options_with_another_explainer_are_refused(qwen, dataset, tmp_path):
    with pytest.raises(ValueError, match=r"GAE options \(quantity\) do not apply to the rollout explainer"):
        run(qwen, dataset, tmp_path, explainer="rollout", quantity="margin")
