"""Train a relevance predictor on a data directory written by `explainprune collect`."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from ..configs import config_from_arguments
from ..devices import resolve_device, torch_dtype
from ..errors import ExplainPruneError
from ..explain.target import dilate_target
from ..paths import output_directory
from ..run_configs import PredictorTrainingConfig
from .atomic import atomic_write_json
from .metrics import METRIC_NAMES, mean_metrics, record_metrics, uniform_prediction
from .model import Predictor, pad_features
from .shards import Record, load_records

METRICS_NAME = "metrics.json"
TRAINING_CONFIG_NAME = "training-config.json"
# What metrics.json copies from the data's manifest: how the targets were made.
TARGET_PROVENANCE = ("model", "data", "limit", "explainer", "explainer_options", "fingerprint", "modality", "records", "dropped")


def is_validation_id(record_id: str, val_fraction: float) -> bool:
    """Deterministic held-out assignment from the id alone (stable when the data set grows)."""
    digest = hashlib.sha256(record_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def split_by_id(records: Sequence[Record], val_fraction: float) -> tuple[list[Record], list[Record]]:
    """(train, validation) records; raises if either side would be empty."""
    if not 0 < val_fraction < 1:
        raise ExplainPruneError(f"val_fraction must be in (0, 1), got {val_fraction}")
    val = [record for record in records if is_validation_id(record.id, val_fraction)]
    train = [record for record in records if not is_validation_id(record.id, val_fraction)]
    if not train or not val:
        raise ExplainPruneError(
            f"{len(records)} records split into {len(train)} train / {len(val)} validation at "
            f"val_fraction={val_fraction}; collect more records"
        )
    return train, val


def _batch_inputs(records: Sequence[Record], device: torch.device):
    features, mask = pad_features([record.features for record in records])
    return features.to(device), mask.to(device), [record.grids for record in records]


def _batch_loss(model: Predictor, records: Sequence[Record], device: torch.device) -> torch.Tensor:
    """KL(target || predicted) summed over tokens, averaged over records."""
    features, mask, grids = _batch_inputs(records, device)
    targets = torch.nn.utils.rnn.pad_sequence([record.target for record in records], batch_first=True).to(device)
    log_predicted = model(features, mask, grids).float().masked_fill(~mask, 0.0)
    per_token = torch.xlogy(targets, targets) - targets * log_predicted
    return per_token.sum(dim=1).mean()


@torch.no_grad()
def predict_records(model: Predictor, records: Sequence[Record], batch_size: int) -> list[torch.Tensor]:
    """Predicted (n_tokens,) relevance of each record, computed in padded batches."""
    device = next(model.parameters()).device
    predictions = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        probabilities = model(*_batch_inputs(batch, device)).float().exp().cpu()
        predictions.extend(row[: record.n_tokens] for row, record in zip(probabilities, batch))
    return predictions


def evaluate(model: Predictor, records: Sequence[Record], batch_size: int) -> dict[str, float]:
    """Mean metrics of the model's predictions against the records' targets."""
    predictions = predict_records(model, records, batch_size)
    return mean_metrics(record_metrics(record.target, p) for record, p in zip(records, predictions))


def _format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{name} {metrics[name]:.4f}" for name in METRIC_NAMES)


def _comparison_table(predictor: dict[str, float], uniform: dict[str, float]) -> str:
    lines = [f"{'metric':<11}{'predictor':>11}{'uniform':>11}"]
    lines += [f"{name:<11}{predictor[name]:>11.4f}{uniform[name]:>11.4f}" for name in METRIC_NAMES]
    return "\n".join(lines)


def train_predictor(config: PredictorTrainingConfig, out_dir: str | Path) -> dict:
    """Train with Adam on KL(target || predicted); keep the best-validation-KL checkpoint in out_dir,
    the config verbatim as out_dir/training-config.json.

    Runs on `config.device` (default: cuda if available, else cpu). Weights and optimizer state stay
    in float32; with `config.dtype` bf16 or fp16 the forward passes run under autocast in that precision.

    Returns (and writes to out_dir/metrics.json) the best epoch's validation metrics, the uniform
    predictor's metrics on the same records, the per-epoch history and how the targets were collected
    (from the data's manifest). A run whose loss turns NaN or infinite is stopped with an error (its
    weights would rank tokens arbitrarily).
    """
    out_dir = output_directory(out_dir)
    manifest, records = load_records(config.data)
    if config.target_dilation:
        records = [dataclasses.replace(r, target=dilate_target(r.target, r.grids, config.target_dilation)) for r in records]
    train_records, val_records = split_by_id(records, config.val_fraction)
    device = resolve_device(config.device)
    dtype = torch_dtype(config.dtype)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    torch.manual_seed(config.seed)
    predictor_config = {
        "arch": config.arch,
        "n_heads": manifest["n_heads"],
        "fingerprint": manifest["fingerprint"],
        "modality": manifest["modality"],
    }
    model = Predictor(predictor_config | ({} if config.inputs is None else {"inputs": config.inputs})).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    shuffle = torch.Generator().manual_seed(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / TRAINING_CONFIG_NAME, dataclasses.asdict(config))
    uniform = mean_metrics(record_metrics(r.target, uniform_prediction(r.n_tokens)) for r in val_records)
    print(f"{len(train_records)} train / {len(val_records)} validation records; uniform: {_format_metrics(uniform)}")

    result = {
        "arch": config.arch,
        "inputs": model.config["inputs"],
        "data_dir": str(config.data),
        "targets": {key: manifest.get(key) for key in TARGET_PROVENANCE},
        "train_records": len(train_records),
        "val_records": len(val_records),
        "uniform": uniform,
        "history": [],
    }
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(train_records), generator=shuffle).tolist()
        batches = [[train_records[i] for i in order[s : s + config.batch_size]] for s in range(0, len(order), config.batch_size)]
        train_kl = 0.0
        for batch in tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", leave=False):
            with autocast:
                loss = _batch_loss(model, batch, device)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_kl += loss.item() * len(batch)
        model.eval()
        with autocast:
            val = evaluate(model, val_records, config.batch_size)
        if not (math.isfinite(train_kl) and math.isfinite(val["kl"])):
            raise ExplainPruneError(f"training diverged in epoch {epoch} (NaN or infinite loss): lower --lr (now {config.lr})")
        result["history"].append({"epoch": epoch, "train_kl": train_kl / len(train_records), "val": val})
        improved = "best" not in result or val["kl"] < result["best"]["kl"]
        if improved:
            result["best"], result["best_epoch"] = val, epoch
            model.save_pretrained(out_dir)
        print(f"epoch {epoch}/{config.epochs} train kl {train_kl / len(train_records):.4f} | val {_format_metrics(val)}"
              + (" *" if improved else ""))
        atomic_write_json(out_dir / METRICS_NAME, result)
    print(f"best epoch {result['best_epoch']} (validation, {len(val_records)} records), saved to {out_dir}")
    print(_comparison_table(result["best"], uniform))
    return result


def main(args: argparse.Namespace) -> int:
    """Run `explainprune train` with parsed arguments."""
    train_predictor(config_from_arguments(PredictorTrainingConfig, args), args.out)
    return 0
