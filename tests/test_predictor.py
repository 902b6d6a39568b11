"""Tests for explainprune.predictor: shard store, model, metrics and training."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from explainprune.errors import ExplainPruneError
from explainprune.explain import dilate_target
from explainprune.predictor import (
    Predictor,
    PredictorMismatchError,
    Record,
    ShardWriter,
    load_records,
    train_predictor,
)
from explainprune.predictor import shards as shards_module
from explainprune.predictor.metrics import mean_metrics, record_metrics, top_count, uniform_prediction
from explainprune.predictor.model import pad_features
from explainprune.cli import build_parser
from explainprune.predictor.train import main, split_by_id
from explainprune.run_configs import PredictorTrainingConfig

IDENTITY = {
    "fingerprint": "qwen2-vl-test@abc",
    "explainer": "gae",
    "explainer_options": {"quantity": "logprob"},
    "modality": "image",
}
N_HEADS = 4


def make_record(record_id: str, grids, generator: torch.Generator) -> Record:
    """Synthetic record: per-head row-mean and row-peak attention around a shared per-token level; the
    target is a smooth function of the head-mean row-mean attention (its normalised square)."""
    n_tokens = sum(t * h * w for t, h, w in grids)
    level = torch.exp(torch.randn(n_tokens, 1, generator=generator))
    features = level * torch.exp(0.3 * torch.randn(n_tokens, 2 * N_HEADS, generator=generator))
    features = features / features.sum(dim=0)
    head_mean = features[:, :N_HEADS].mean(dim=1)
    target = (head_mean / head_mean.mean()) ** 2
    return Record(record_id, features, target / target.sum(), tuple(grids))


def make_records(count: int, seed: int = 0) -> list[Record]:
    generator = torch.Generator().manual_seed(seed)
    records = []
    for index in range(count):
        h, w = (int(v) for v in torch.randint(8, 11, (2,), generator=generator))
        records.append(make_record(f"item-{index}", [(1, h, w)], generator))
    return records


def stored_ids(data_dir) -> list[str]:
    return [record.id for record in load_records(data_dir)[1]]


# --- shard store -------------------------------------------------------------------------------


def test_writer_resumes_after_crash_with_nothing_lost_or_doubled(tmp_path):
    records = make_records(15)
    crashed = ShardWriter(tmp_path, IDENTITY, shard_size=4)
    for record in records[:10]:
        crashed.add(record)
    del crashed  # killed before close: the 2 records after the last full shard are lost

    with ShardWriter(tmp_path, IDENTITY, shard_size=4) as writer:
        assert writer.done_ids() == {record.id for record in records[:8]}
        for record in records:
            if record.id not in writer.done_ids():
                writer.add(record)

    manifest, loaded = load_records(tmp_path)
    assert sorted(record.id for record in loaded) == sorted(record.id for record in records)
    assert manifest["records"] == 15 and manifest["shards"] == 4 and manifest["n_heads"] == N_HEADS
    originals = {record.id: record for record in records}
    for record in loaded:
        assert torch.equal(record.features, originals[record.id].features)
        assert torch.equal(record.target, originals[record.id].target)
        assert record.grids == originals[record.id].grids


def test_shard_written_just_before_a_crash_is_adopted_on_reopen(tmp_path):
    records = make_records(3)
    ShardWriter(tmp_path, IDENTITY).close()
    manifest_before = (tmp_path / "manifest.json").read_text()
    with ShardWriter(tmp_path, IDENTITY, shard_size=2) as writer:
        for record in records[:2]:
            writer.add(record)
    (tmp_path / "manifest.json").write_text(manifest_before)  # killed before the manifest update
    with ShardWriter(tmp_path, IDENTITY) as writer:
        assert writer.done_ids() == {records[0].id, records[1].id}
        writer.add(records[2])
    assert sorted(stored_ids(tmp_path)) == sorted(record.id for record in records)


def test_exception_inside_context_keeps_added_records(tmp_path):
    records = make_records(6)
    with pytest.raises(KeyboardInterrupt):
        with ShardWriter(tmp_path, IDENTITY, shard_size=100) as writer:
            for record in records[:3]:
                writer.add(record)
            raise KeyboardInterrupt
    with ShardWriter(tmp_path, IDENTITY) as writer:
        assert writer.done_ids() == {record.id for record in records[:3]}
        for record in records[3:]:
            writer.add(record)
        with pytest.raises(ValueError, match="already stored"):
            writer.add(records[0])
    assert sorted(stored_ids(tmp_path)) == sorted(record.id for record in records)


def test_failed_shard_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def failing_save_file(tensors, path, metadata=None):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(shards_module, "save_file", failing_save_file)
    writer = ShardWriter(tmp_path, IDENTITY, shard_size=2)
    writer.add(make_records(1)[0])
    with pytest.raises(OSError, match="disk full"):
        writer.add(make_records(2)[1])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["manifest.json"]
    assert json.loads((tmp_path / "manifest.json").read_text())["records"] == 0


def test_reopening_removes_temp_files_of_a_killed_write(tmp_path):
    ShardWriter(tmp_path, IDENTITY).close()
    (tmp_path / ".shard-00000.safetensors.x1y2.tmp").write_bytes(b"half a shard")
    ShardWriter(tmp_path, IDENTITY).close()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["manifest.json"]


@pytest.mark.parametrize("key", ["fingerprint", "explainer", "explainer_options", "modality"])
def test_reopening_with_different_identity_raises(tmp_path, key):
    with ShardWriter(tmp_path, IDENTITY) as writer:
        writer.add(make_records(1)[0])
    other = {**IDENTITY, key: "something-else"}
    with pytest.raises(ValueError, match=f"{key}=.*something-else"):
        ShardWriter(tmp_path, other)


def test_manifest_keeps_given_fields_and_counts_drops(tmp_path):
    records = make_records(3)
    with ShardWriter(tmp_path, {**IDENTITY, "data": {"split": "train", "n": 5}}, shard_size=2) as writer:
        for record in records:
            writer.add(record)
        writer.drop("item-3", "empty_answer")
        writer.drop("item-4", "too_many_tokens")
    with ShardWriter(tmp_path, {**IDENTITY, "data": {"split": "train", "n": 6}}) as writer:
        assert writer.done_ids() == {"item-0", "item-1", "item-2", "item-3", "item-4"}
        writer.drop("item-5", "empty_answer")
    manifest, loaded = load_records(tmp_path)
    assert manifest["data"] == {"split": "train", "n": 6}
    assert manifest["dropped"] == {"empty_answer": 2, "too_many_tokens": 1}
    assert manifest["records"] == len(loaded) == 3
    assert manifest["fingerprint"] == IDENTITY["fingerprint"]


def test_a_store_of_the_older_one_column_per_head_layout_is_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with ShardWriter(tmp_path, IDENTITY) as writer:
        for record in make_records(3):
            writer.add(record)
    (shard_path,) = tmp_path.glob("shard-*.safetensors")
    with safe_open(shard_path, framework="pt") as shard:
        metadata = shard.metadata()
    tensors = load_file(shard_path)
    tensors["features"] = tensors["features"][:, :N_HEADS].contiguous()  # row-mean only, as written before
    save_file(tensors, shard_path, metadata=metadata)
    with pytest.raises(ExplainPruneError, match="older explainprune; collect it again"):
        load_records(tmp_path)


@pytest.mark.parametrize(
    "bad_record, message",
    [
        (Record("a", torch.rand(6, 2 * N_HEADS), torch.full((6,), 1 / 6), ((1, 2, 2),)), "cover 4 tokens"),
        (Record("b", torch.rand(4, 2 * N_HEADS), torch.full((4,), 0.5), ((1, 2, 2),)), "sums to 2"),
        (Record("c", torch.rand(4, 6), torch.full((4,), 0.25), ((1, 2, 2),)), "3 heads"),
        (Record("d", torch.rand(4, 7), torch.full((4,), 0.25), ((1, 2, 2),)), r"2 \* n_heads"),
    ],
)
def test_add_rejects_invalid_records(tmp_path, bad_record, message):
    with ShardWriter(tmp_path, IDENTITY) as writer:
        writer.add(make_records(1)[0])
        with pytest.raises(ValueError, match=message):
            writer.add(bad_record)


def test_load_records_names_missing_and_corrupt_files(tmp_path):
    with ShardWriter(tmp_path, IDENTITY, shard_size=2) as writer:
        for record in make_records(4):
            writer.add(record)
    shard = tmp_path / "shard-00001.safetensors"
    good_bytes = shard.read_bytes()
    shard.write_bytes(good_bytes[: len(good_bytes) // 2])
    with pytest.raises(ValueError, match="shard-00001.safetensors"):
        load_records(tmp_path)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001.safetensors"):
        load_records(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json"):
        load_records(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_records(tmp_path / "nowhere")


# --- model -------------------------------------------------------------------------------------

MIXED_GRIDS = [
    ((1, 6, 7),),
    ((1, 3, 3), (1, 4, 6)),  # base image + tiles
    ((3, 4, 5),),  # video
    ((1, 2, 2),),
]


def make_predictor(arch: str, seed: int = 0, **overrides) -> Predictor:
    torch.manual_seed(seed)
    return Predictor({"arch": arch, "n_heads": N_HEADS, **IDENTITY, **overrides}).eval()


@pytest.mark.parametrize("arch", ["paper", "grid"])
def test_padded_batch_matches_single_record_predictions(arch):
    """The batch holds a video, so its boxes are 3-D; the images alone take the 2-D fast path."""
    predictor = make_predictor(arch)
    generator = torch.Generator().manual_seed(1)
    records = [make_record(f"r{i}", grids, generator) for i, grids in enumerate(MIXED_GRIDS)]
    features, mask = pad_features([record.features for record in records])
    with torch.no_grad():
        batched = predictor(features, mask, [record.grids for record in records]).exp()
    for row, record in zip(batched, records):
        alone = predictor.predict(record.features, record.grids)
        assert alone.shape == (record.n_tokens,)
        assert torch.allclose(row[: record.n_tokens], alone, atol=1e-5, rtol=0)
        assert row[record.n_tokens :].sum() == 0
        assert math.isclose(alone.sum().item(), 1.0, abs_tol=1e-5)


def test_grid_arch_uses_the_2d_layout_and_paper_arch_does_not():
    generator = torch.Generator().manual_seed(2)
    record = make_record("r", [(1, 6, 7)], generator)
    for arch, layout_matters in [("paper", False), ("grid", True)]:
        predictor = make_predictor(arch)
        as_grid = predictor.predict(record.features, ((1, 6, 7),))
        as_transposed_grid = predictor.predict(record.features, ((1, 7, 6),))
        assert torch.allclose(as_grid, as_transposed_grid) != layout_matters


@pytest.mark.parametrize("arch", ["paper", "grid"])
@pytest.mark.parametrize("inputs", ["mean", "heads", "heads+peaks"])
def test_each_inputs_choice_sees_exactly_its_channels(arch, inputs):
    predictor = make_predictor(arch, inputs=inputs)
    channels = {"mean": 1, "heads": N_HEADS + 1, "heads+peaks": 2 * N_HEADS + 1}[inputs]
    assert predictor.blocks[0].depthwise.in_channels == channels
    record = make_record("r", [(1, 8, 8)], torch.Generator().manual_seed(6))
    reference = predictor.predict(record.features, record.grids)
    swapped = torch.tensor([1, 0, 3, 2, 4, 5, 6, 7])  # the same head mean, row-mean heads swapped
    other_peaks = torch.cat([record.features[:, :N_HEADS], record.features[:, N_HEADS:].flip(0)], dim=1)
    same = lambda features: torch.allclose(reference, predictor.predict(features, record.grids), atol=1e-6)
    assert same(record.features[:, swapped]) == (inputs == "mean")
    assert same(other_peaks) == (inputs != "heads+peaks")


def test_inputs_default_to_the_arch_and_bad_inputs_are_named():
    assert make_predictor("paper").config["inputs"] == "mean" and make_predictor("grid").config["inputs"] == "heads"
    with pytest.raises(ExplainPruneError, match="unknown predictor inputs 'all'"):
        make_predictor("grid", inputs="all")


@pytest.mark.parametrize("arch", ["paper", "grid"])
def test_predictions_do_not_depend_on_attention_scale(arch):
    predictor = make_predictor(arch)
    record = make_record("r", [(1, 8, 8)], torch.Generator().manual_seed(3))
    reference = predictor.predict(record.features, record.grids)
    rescaled = predictor.predict(record.features * 0.25, record.grids)
    assert torch.allclose(reference, rescaled, atol=1e-6)


@pytest.mark.parametrize("arch", ["paper", "grid"])
def test_save_and_load_round_trip(tmp_path, arch):
    predictor = make_predictor(arch, channels=[8, 16], kernel_size=3)
    with torch.no_grad():
        for parameter in predictor.parameters():
            parameter.add_(torch.randn_like(parameter))  # make sure non-default weights are saved
    predictor.save_pretrained(tmp_path / "ckpt")
    loaded = Predictor.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == predictor.config
    record = make_record("r", [(2, 3, 4)], torch.Generator().manual_seed(4))
    assert torch.equal(loaded.predict(record.features, record.grids), predictor.predict(record.features, record.grids))


def test_check_compatible_names_both_models_and_modalities():
    predictor = make_predictor("paper")
    predictor.check_compatible(IDENTITY["fingerprint"], "image")
    with pytest.raises(PredictorMismatchError) as raised:
        predictor.check_compatible("llava-ov-test@def", "video")
    assert isinstance(raised.value, ValueError)
    for name in (IDENTITY["fingerprint"], "image", "llava-ov-test@def", "video"):
        assert name in str(raised.value)
    with pytest.raises(PredictorMismatchError, match="video"):
        predictor.check_compatible(IDENTITY["fingerprint"], "video")


def test_from_pretrained_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Predictor.from_pretrained(tmp_path / "missing")
    make_predictor("grid", channels=[8]).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ValueError, match="corrupt predictor weights .*model.safetensors"):
        Predictor.from_pretrained(tmp_path)
    make_predictor("grid", channels=[8]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "channels": [16]}))
    with pytest.raises(ValueError, match="do not fit config"):
        Predictor.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "arch": "transformer"}))
    with pytest.raises(ValueError, match="config.json.*unknown predictor arch"):
        Predictor.from_pretrained(tmp_path)


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_of_perfect_uniform_and_reversed_predictions():
    target = torch.softmax(torch.linspace(-3, 3, 40), dim=0)
    perfect = record_metrics(target, target)
    assert perfect["kl"] == pytest.approx(0, abs=1e-9)
    assert perfect["recall@50"] == perfect["recall@25"] == perfect["recall@10"] == 1.0
    assert perfect["spearman"] == pytest.approx(1.0)

    uniform = record_metrics(target, uniform_prediction(40))
    assert uniform["kl"] == pytest.approx(math.log(40) + (target * target.log()).sum().item(), rel=1e-5)
    assert uniform["recall@50"] == pytest.approx(20 / 40)
    assert uniform["recall@10"] == pytest.approx(top_count(40, 0.1) / 40)
    assert uniform["spearman"] == 0.0

    reversed_ = record_metrics(target, target.flip(0))
    assert reversed_["recall@50"] == 0.0 and reversed_["spearman"] == pytest.approx(-1.0)


# --- training ----------------------------------------------------------------------------------


def test_split_by_id_is_deterministic_and_independent_of_other_records():
    records = make_records(200)
    train, val = split_by_id(records, 0.2)
    assert 20 <= len(val) <= 60 and len(train) + len(val) == 200
    _, val_of_subset = split_by_id(records[::-1][:150], 0.2)
    assert {r.id for r in val_of_subset} == {r.id for r in val if int(r.id.split("-")[1]) >= 50}


@pytest.fixture(scope="module")
def synthetic_data_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("synthetic")
    with ShardWriter(data_dir, IDENTITY, shard_size=100) as writer:
        for record in make_records(200):
            writer.add(record)
    return data_dir


@pytest.fixture
def one_thread():
    """Training on a shared 2-core machine: one thread avoids oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("arch", ["paper", "grid"])
def test_training_beats_uniform_and_generalises_to_more_tokens(synthetic_data_dir, tmp_path, one_thread, arch):
    config = PredictorTrainingConfig(data=str(synthetic_data_dir), arch=arch, epochs=2, batch_size=16, val_fraction=0.2)
    result = train_predictor(config, tmp_path)
    assert json.loads((tmp_path / "training-config.json").read_text()) == dataclasses.asdict(config)
    assert result["best"]["kl"] < 0.25 * result["uniform"]["kl"]
    assert result["best"]["spearman"] > 0.7
    assert json.loads((tmp_path / "metrics.json").read_text())["best"] == result["best"]
    loaded = Predictor.from_pretrained(tmp_path)
    loaded.check_compatible(IDENTITY["fingerprint"], IDENTITY["modality"])
    assert loaded.config["arch"] == arch

    generator = torch.Generator().manual_seed(5)
    larger = [make_record(f"large-{i}", [(1, 16, 16)], generator) for i in range(20)]  # trained on 64-100
    on_larger = mean_metrics(record_metrics(r.target, loaded.predict(r.features, r.grids)) for r in larger)
    uniform_on_larger = mean_metrics(record_metrics(r.target, uniform_prediction(256)) for r in larger)
    assert on_larger["kl"] < 0.25 * uniform_on_larger["kl"]


def test_cli_arguments_reach_train_predictor(monkeypatch):
    calls = []
    monkeypatch.setattr("explainprune.predictor.train.train_predictor", lambda *a, **k: calls.append((a, k)))
    assert main(build_parser().parse_args(["train", "--data", "d", "--out", "o", "--arch", "grid", "--epochs", "2"])) == 0
    assert main(build_parser().parse_args(["train", "--data", "d", "--out", "o", "--inputs", "heads"])) == 0
    (config, out), _ = calls[0]
    assert (config.data, str(out)) == ("d", "o")
    assert config == PredictorTrainingConfig(data="d", arch="grid", epochs=2)
    assert calls[1][0][0] == PredictorTrainingConfig(data="d", inputs="heads")


def test_dilated_target_spreads_each_peak_to_its_ring_in_its_own_frame():
    """Two grids in sequence: a 1x3x3 image with one relevant centre token and a 2x2x2 clip with one relevant
    token in its first frame. Radius 1 gives the whole 3x3 image the peak, and only the clip's first frame
    its value: frames stay apart. Renormalised to a distribution; radius 0 changes nothing."""
    target = torch.zeros(9 + 8)
    target[4], target[9] = 0.75, 0.25
    dilated = dilate_target(target, ((1, 3, 3), (2, 2, 2)), radius=1)
    expected = torch.cat([torch.full((9,), 0.75), torch.full((4,), 0.25), torch.zeros(4)])
    torch.testing.assert_close(dilated, expected / expected.sum())
    assert torch.equal(dilate_target(target, ((1, 3, 3), (2, 2, 2)), radius=0), target)
    with pytest.raises(ValueError, match="cover 9 tokens"):
        dilate_target(target, ((1, 3, 3),), radius=1)
