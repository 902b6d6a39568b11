"""Training-data store for the relevance predictor: resumable safetensors shards plus a manifest.

Layout of a data directory:
  manifest.json            the collect run's description (model fingerprint, explainer and its
                           options, modality, data spec, ...) plus counts this module maintains
  shard-00000.safetensors  concatenated features/targets of up to `shard_size` records

The shards are the source of truth: the manifest is rewritten from them after every shard, and a
reopened directory resumes from the shards that were completely written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import ExplainPruneError, MissingFileError
from .atomic import atomic_write, atomic_write_json, remove_stale_temp_files

Grid = tuple[int, int, int]

MANIFEST_NAME = "manifest.json"
IDENTITY_KEYS = ("fingerprint", "explainer", "explainer_options", "modality")
COUNT_KEYS = ("n_heads", "records", "shards", "shard_files", "dropped")
SHARD_PATTERN = re.compile(r"shard-(\d{5,})\.safetensors")
TARGET_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Record:
    """One image or video of one prompt.

    features: (n_tokens, 2 * n_heads) layer-0 attention on the scored visual tokens: per head the
        row-mean, then per head the row-peak (`scoring.learned.span_features`).
    target: (n_tokens,) preprocessed relevance, a probability distribution.
    grids: (t, h, w) segments in sequence order, covering the tokens row-major.
    """

    id: str
    features: torch.Tensor
    target: torch.Tensor
    grids: tuple[Grid, ...]

    @property
    def n_tokens(self) -> int:
        return self.features.shape[0]


def grid_tokens(grids) -> int:
    """Number of tokens covered by (t, h, w) segments."""
    return sum(t * h * w for t, h, w in grids)


def validated_record(record: Record, n_heads: int | None) -> Record:
    """Check a record's shapes and values; return it with CPU float32 tensors and tuple grids."""
    if not isinstance(record.id, str) or not record.id:
        raise ExplainPruneError(f"record id must be a non-empty string, got {record.id!r}")
    features = record.features.detach().to("cpu", torch.float32).contiguous()
    target = record.target.detach().to("cpu", torch.float32).contiguous()
    grids = tuple(tuple(int(v) for v in grid) for grid in record.grids)
    where = f"record {record.id!r}"
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] % 2:
        raise ExplainPruneError(f"{where}: features must be (n_tokens>0, 2 * n_heads), got {tuple(features.shape)}")
    if n_heads is not None and features.shape[1] != 2 * n_heads:
        raise ExplainPruneError(f"{where}: features have {features.shape[1] // 2} heads, the store has {n_heads}")
    if target.shape != (features.shape[0],):
        raise ExplainPruneError(f"{where}: target shape {tuple(target.shape)} != ({features.shape[0]},)")
    if not grids or any(len(grid) != 3 or min(grid) < 1 for grid in grids):
        raise ExplainPruneError(f"{where}: grids must be non-empty (t, h, w) triples of positive ints, got {grids}")
    if grid_tokens(grids) != features.shape[0]:
        raise ExplainPruneError(
            f"{where}: grids {grids} cover {grid_tokens(grids)} tokens, features have {features.shape[0]}"
        )
    if not torch.isfinite(features).all() or (features < 0).any():
        raise ExplainPruneError(f"{where}: features must be finite and non-negative")
    if not torch.isfinite(target).all() or (target < 0).any():
        raise ExplainPruneError(f"{where}: target must be finite and non-negative")
    if abs(target.sum().item() - 1.0) > TARGET_SUM_TOLERANCE:
        raise ExplainPruneError(f"{where}: target sums to {target.sum().item():.6f}, expected 1")
    return Record(record.id, features, target, grids)


class ShardWriter:
    """Append records to a data directory in shards; resumes an existing directory.

    Use as a context manager. `done_ids()` lists ids already stored or dropped so a collect loop
    can skip them; `drop(id, reason)` marks an item that yields no record (counted per reason).
    """

    def __init__(self, out_dir: str | Path, manifest: dict, shard_size: int = 256):
        if shard_size < 1:
            raise ExplainPruneError(f"shard_size must be >= 1, got {shard_size}")
        missing = [key for key in IDENTITY_KEYS if key not in manifest]
        if missing:
            raise ExplainPruneError(f"manifest must contain {', '.join(missing)}")
        reserved = [key for key in COUNT_KEYS if key in manifest]
        if reserved:
            raise ExplainPruneError(f"manifest keys {reserved} are maintained by ShardWriter; do not pass them")
        self.out_dir = Path(out_dir)
        self.shard_size = shard_size
        self._manifest = dict(manifest)
        self._pending: list[Record] = []
        self._pending_drops: dict[str, str] = {}
        self._closed = False

        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(self.out_dir)
        self._check_identity()
        self._shard_files: list[str] = []
        self._done: set[str] = set()
        self._record_count = 0
        self._dropped: dict[str, int] = {}
        self._n_heads: int | None = None
        for shard_path in _shard_paths(self.out_dir):
            metadata = _read_shard_metadata(shard_path)
            self._register_shard(shard_path, metadata)
            self._done.update(metadata["ids"], metadata["dropped"])
        self._write_manifest()

    def _check_identity(self) -> None:
        manifest_path = self.out_dir / MANIFEST_NAME
        if not manifest_path.exists():
            if _shard_paths(self.out_dir):
                raise ExplainPruneError(
                    f"{self.out_dir} has shards but no {MANIFEST_NAME}; cannot check what they hold"
                )
            return
        stored = _read_manifest(manifest_path)
        differing = [key for key in IDENTITY_KEYS if stored.get(key) != self._manifest[key]]
        if differing:
            stored_desc = ", ".join(f"{key}={stored.get(key)!r}" for key in differing)
            given_desc = ", ".join(f"{key}={self._manifest[key]!r}" for key in differing)
            raise ExplainPruneError(
                f"{self.out_dir} holds data for {stored_desc}, not {given_desc}; "
                "use a different output directory"
            )

    def _register_shard(self, shard_path: Path, metadata: dict) -> None:
        ids = metadata["ids"]
        dropped = metadata["dropped"]
        if metadata["n_heads"] is not None:
            if self._n_heads is not None and self._n_heads != metadata["n_heads"]:
                raise ExplainPruneError(f"{shard_path} has {metadata['n_heads']} heads, earlier shards {self._n_heads}")
            self._n_heads = metadata["n_heads"]
        self._shard_files.append(shard_path.name)
        self._record_count += len(ids)
        for reason in dropped.values():
            self._dropped[reason] = self._dropped.get(reason, 0) + 1

    def done_ids(self) -> set[str]:
        """Ids already stored or dropped, including those not yet flushed."""
        return set(self._done)

    def add(self, record: Record) -> None:
        """Queue a record; writes a shard once `shard_size` items are queued."""
        self._check_open()
        record = validated_record(record, self._n_heads)
        if record.id in self._done:
            raise ExplainPruneError(f"record {record.id!r} is already stored in {self.out_dir}")
        self._n_heads = record.features.shape[1] // 2
        self._pending.append(record)
        self._done.add(record.id)
        self._flush_if_full()

    def drop(self, record_id: str, reason: str) -> None:
        """Mark an item as done without a record (e.g. 'answer_empty'); counted in manifest['dropped']."""
        self._check_open()
        if record_id in self._done:
            raise ExplainPruneError(f"record {record_id!r} is already stored in {self.out_dir}")
        self._pending_drops[record_id] = reason
        self._done.add(record_id)
        self._flush_if_full()

    def close(self) -> None:
        """Write queued items and the manifest; safe to call twice."""
        if self._closed:
            return
        if self._pending or self._pending_drops:
            self._flush()
        self._closed = True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"ShardWriter for {self.out_dir} is closed")

    def _flush_if_full(self) -> None:
        if len(self._pending) + len(self._pending_drops) >= self.shard_size:
            self._flush()

    def _flush(self) -> None:
        existing = [int(SHARD_PATTERN.fullmatch(name).group(1)) for name in self._shard_files]
        shard_path = self.out_dir / f"shard-{max(existing, default=-1) + 1:05d}.safetensors"
        tensors, metadata = _encode_shard(self._pending, self._pending_drops, self._n_heads)
        atomic_write(shard_path, lambda temp: save_file(tensors, temp, metadata=metadata))
        self._register_shard(shard_path, _decode_metadata(metadata, shard_path))
        self._pending = []
        self._pending_drops = {}
        self._write_manifest()

    def _write_manifest(self) -> None:
        manifest = {
            **self._manifest,
            "n_heads": self._n_heads,
            "records": self._record_count,
            "shards": len(self._shard_files),
            "shard_files": list(self._shard_files),
            "dropped": dict(sorted(self._dropped.items())),
        }
        atomic_write_json(self.out_dir / MANIFEST_NAME, manifest)


def _encode_shard(records: list[Record], drops: dict[str, str], n_heads: int | None):
    token_counts = [record.n_tokens for record in records]
    segment_counts = [len(record.grids) for record in records]
    tensors = {
        "features": torch.cat([r.features for r in records]) if records else torch.zeros(0, 2 * (n_heads or 0)),
        "targets": torch.cat([r.target for r in records]) if records else torch.zeros(0),
        "token_offsets": torch.tensor([0, *token_counts], dtype=torch.int64).cumsum(0),
        "grids": torch.tensor([grid for r in records for grid in r.grids], dtype=torch.int64).reshape(-1, 3),
        "grid_offsets": torch.tensor([0, *segment_counts], dtype=torch.int64).cumsum(0),
    }
    metadata = {
        "ids": json.dumps([record.id for record in records]),
        "dropped": json.dumps(drops),
        "n_heads": json.dumps(n_heads),
    }
    return tensors, metadata


def _decode_metadata(metadata: dict | None, shard_path: Path) -> dict:
    try:
        return {key: json.loads(metadata[key]) for key in ("ids", "dropped", "n_heads")}
    except (TypeError, KeyError, json.JSONDecodeError) as error:
        raise ExplainPruneError(f"corrupt shard {shard_path}: bad metadata ({error!r})") from error


def _read_shard_metadata(shard_path: Path) -> dict:
    try:
        with safe_open(shard_path, framework="pt") as shard:
            metadata = shard.metadata()
    except Exception as error:
        raise ExplainPruneError(f"corrupt shard {shard_path}: {error}") from error
    return _decode_metadata(metadata, shard_path)


def _shard_paths(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if SHARD_PATTERN.fullmatch(path.name))


def _read_manifest(manifest_path: Path) -> dict:
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise MissingFileError(
            f"missing {manifest_path}; is this a directory written by `explainprune collect`?"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExplainPruneError(f"corrupt manifest {manifest_path}: {error}") from error
    if not isinstance(manifest, dict):
        raise ExplainPruneError(f"corrupt manifest {manifest_path}: expected a JSON object")
    return manifest


def _read_shard(shard_path: Path) -> list[Record]:
    if not shard_path.exists():
        raise MissingFileError(f"missing shard {shard_path} listed in its {MANIFEST_NAME}")
    metadata = _read_shard_metadata(shard_path)
    try:
        tensors = load_file(shard_path)
        features, targets = tensors["features"], tensors["targets"]
        token_offsets, grids, grid_offsets = tensors["token_offsets"], tensors["grids"], tensors["grid_offsets"]
    except Exception as error:
        raise ExplainPruneError(f"corrupt shard {shard_path}: {error!r}") from error
    ids = metadata["ids"]
    if ids and features.shape[1] != 2 * metadata["n_heads"]:
        raise ExplainPruneError(
            f"{shard_path} holds {features.shape[1]} feature columns for {metadata['n_heads']} heads, not two per head "
            "(row-mean and row-peak): it was collected by an older explainprune; collect it again"
        )
    offsets_fit = len(token_offsets) == len(grid_offsets) == len(ids) + 1 and int(token_offsets[-1]) == len(features)
    if not offsets_fit:
        raise ExplainPruneError(f"corrupt shard {shard_path}: offsets do not match {len(ids)} ids")
    records = []
    for index, record_id in enumerate(ids):
        start, end = int(token_offsets[index]), int(token_offsets[index + 1])
        segments = grids[int(grid_offsets[index]) : int(grid_offsets[index + 1])]
        record_grids = tuple(tuple(int(v) for v in segment) for segment in segments)
        if grid_tokens(record_grids) != end - start:
            raise ExplainPruneError(
                f"corrupt shard {shard_path}: grids of record {record_id!r} do not match its tokens"
            )
        records.append(Record(record_id, features[start:end], targets[start:end], record_grids))
    return records


def load_records(data_dir: str | Path) -> tuple[dict, list[Record]]:
    """Read a data directory's manifest and all records of the shards it lists."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        what = "is a file, not a data directory" if data_dir.exists() else "does not exist"
        raise MissingFileError(f"data directory {data_dir} {what}: give a directory written by `explainprune collect`")
    manifest_path = data_dir / MANIFEST_NAME
    manifest = _read_manifest(manifest_path)
    if not isinstance(manifest.get("shard_files"), list):
        raise ExplainPruneError(f"corrupt manifest {manifest_path}: no shard_files list")
    records = [record for name in manifest["shard_files"] for record in _read_shard(data_dir / name)]
    if len(records) != manifest.get("records"):
        raise ExplainPruneError(
            f"{manifest_path} counts {manifest.get('records')} records, its shards hold {len(records)}"
        )
    return manifest, records
