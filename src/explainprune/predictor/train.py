"""Train a relevance predictor on a data directory written by `explainprune collect`."""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from ..devices import resolve_device, torch_dtype
from ..errors import ExplainPruneError
from .atomic import atomic_write_json
from .metrics import METRIC_NAMES, mean_metrics, record_metrics, uniform_prediction
from .model import Predictor, pad_features
from .shards import Record, load_records

DEFAULT_EPOCHS = 20
METRICS_NAME = "metrics.json"


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


def train_predictor(
    data_dir: str | Path,
    out_dir: str | Path,
    arch: str = "paper",
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = 128,
    lr: float = 1e-3,
    val_fraction: float = 0.1,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "fp32",
) -> dict:
    """Train with Adam on KL(target || predicted); keep the best-validation-KL checkpoint in out_dir.

    Runs on `device` (default: cuda if available, else cpu). Weights and optimizer state stay in
    float32; with `dtype` bf16 or fp16 the forward passes run under autocast in that precision.

    Returns (and writes to out_dir/metrics.json) the best epoch's validation metrics, the uniform
    predictor's metrics on the same records, and the per-epoch history.
    """
    if epochs < 1 or batch_size < 1:
        raise ExplainPruneError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    manifest, records = load_records(data_dir)
    train_records, val_records = split_by_id(records, val_fraction)
    device = resolve_device(device)
    autocast = torch.autocast(device.type, dtype=torch_dtype(dtype), enabled=torch_dtype(dtype) != torch.float32)
    torch.manual_seed(seed)
    model = Predictor(
        {
            "arch": arch,
            "n_heads": manifest["n_heads"],
            "fingerprint": manifest["fingerprint"],
            "modality": manifest["modality"],
        }
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    shuffle = torch.Generator().manual_seed(seed)
    out_dir = Path(out_dir)
    uniform = mean_metrics(record_metrics(r.target, uniform_prediction(r.n_tokens)) for r in val_records)
    print(f"{len(train_records)} train / {len(val_records)} validation records; uniform: {_format_metrics(uniform)}")

    result = {
        "arch": arch,
        "data_dir": str(data_dir),
        "train_records": len(train_records),
        "val_records": len(val_records),
        "uniform": uniform,
        "history": [],
    }
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train_records), generator=shuffle).tolist()
        batches = [[train_records[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
        train_kl = 0.0
        for batch in tqdm(batches, desc=f"epoch {epoch}/{epochs}", leave=False):
            with autocast:
                loss = _batch_loss(model, batch, device)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_kl += loss.item() * len(batch)
        model.eval()
        with autocast:
            val = evaluate(model, val_records, batch_size)
        result["history"].append({"epoch": epoch, "train_kl": train_kl / len(train_records), "val": val})
        improved = "best" not in result or val["kl"] < result["best"]["kl"]
        if improved:
            result["best"], result["best_epoch"] = val, epoch
            model.save_pretrained(out_dir)
        print(f"epoch {epoch}/{epochs} train kl {train_kl / len(train_records):.4f} | val {_format_metrics(val)}"
              + (" *" if improved else ""))
        atomic_write_json(out_dir / METRICS_NAME, result)
    print(f"best epoch {result['best_epoch']} (validation, {len(val_records)} records), saved to {out_dir}")
    print(_comparison_table(result["best"], uniform))
    return result


def main(args: argparse.Namespace) -> int:
    """Run `explainprune train` with parsed arguments."""
    train_predictor(
        args.data,
        args.out,
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        val_fraction=args.val_fraction,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
    )
    return 0
