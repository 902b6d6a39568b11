"""Any data spec as a movable lmms-eval task folder: `test.parquet` next to `<name>.yaml`.

The YAML names the parquet file relative to itself, so the folder can be moved or shipped; pass
the folder (or a parent) to lmms-eval's --include_path. Scoring is lmms-eval's `exact_match` set up
to match `explainprune eval` (case, punctuation and surrounding whitespace ignored); generation is
greedy with the same 6-token limit.

The shipped task (`TASKS_DIR`) holds the embedded model's held-out scenes without their pixels
(500 textured PNGs are 38 MB): its parquet keeps each scene's (split, seed, index, size) and its
`utils.py` redraws the image with the seeded generator, pixel for pixel the image `eval` sees.
"""

from __future__ import annotations

import argparse
import re
import string
from pathlib import Path

from ...bench.quality import MAX_NEW_TOKENS
from ...data import load_samples
from ...data.sample import Sample
from ...errors import ExplainPruneError

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
"""Task folders shipped with the package (an --include_path)."""
EMBEDDED_TASK = "explainprune_embedded_heldout"
EMBEDDED_TASK_DATA = "synthetic:split=test,seed=0,n=500,size=224"
"""The embedded model's held-out scenes, as `explainprune eval` scores them by default."""

DATA_FILE = "test.parquet"
# exact_match applies these before comparing: punctuation out, then surrounding whitespace
IGNORED = ["[" + re.escape(string.punctuation) + "]", r"^\s+", r"\s+$"]


def task_config(name: str, data_spec: str) -> dict:
    """The lmms-eval task YAML of an exported folder."""
    return {
        "task": name,
        "dataset_path": "parquet",
        "dataset_kwargs": {"data_files": {"test": DATA_FILE}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_visual": "image",
        "doc_to_text": "question",
        "doc_to_target": "answer",
        "generation_kwargs": {"max_new_tokens": MAX_NEW_TOKENS, "do_sample": False, "temperature": 0, "until": []},
        "metric_list": [
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": True,
                "ignore_punctuation": True,
                "regexes_to_ignore": IGNORED,
            }
        ],
        "metadata": {"version": 1.0, "data": data_spec},
    }


def _task_folder(out_dir: str | Path, name: str | None) -> tuple[Path, str]:
    out_dir = Path(out_dir)
    name = name or out_dir.name
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ExplainPruneError(f"task name {name!r}: use letters, digits, '_', '-' and '.' (pass --name)")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExplainPruneError(f"--out {out_dir}: exists and is not an empty folder; choose a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir, name


def _write(out_dir: Path, name: str, columns: dict, features: dict, config_text: str) -> Path:
    try:
        from datasets import Dataset, Features
    except ImportError as error:
        raise ExplainPruneError(f"export-task needs the lmms extra: pip install 'explainprune[lmms]' ({error})") from None
    Dataset.from_dict(columns, features=Features(features)).to_parquet(str(out_dir / DATA_FILE))
    config_path = out_dir / f"{name}.yaml"
    config_path.write_text(config_text)
    return config_path


def _text_columns(samples: list[Sample]) -> tuple[dict, dict]:
    from datasets import Value

    columns = {
        "id": [s.id for s in samples],
        "question": [s.question for s in samples],
        "answer": [s.answer for s in samples],
        "qtype": [s.qtype or "" for s in samples],
    }
    return columns, {key: Value("string") for key in columns}


def export_task(samples: list[Sample], data_spec: str, out_dir: str | Path, name: str | None = None) -> Path:
    """Write `samples` with their images as a task folder; returns the YAML's path."""
    import yaml
    from datasets import Image

    if not samples:
        raise ExplainPruneError(f"data spec {data_spec!r} has no samples")
    out_dir, name = _task_folder(out_dir, name)
    columns, features = _text_columns(samples)
    columns["image"], features["image"] = [s.image for s in samples], Image()
    return _write(out_dir, name, columns, features, yaml.safe_dump(task_config(name, data_spec), sort_keys=False))


SCENE_UTILS = '''"""Redraw each scene from its seeds (explainprune's synthetic generator)."""

from explainprune.data.synthetic import generate_sample


def scene_image(doc):
    return [generate_sample(doc["split"], int(doc["seed"]), int(doc["index"]), [int(doc["size"])]).image]
'''


def write_embedded_task(out_dir: str | Path, n: int = 500) -> Path:
    """The shipped task: the held-out scenes of `EMBEDDED_TASK_DATA` (first `n`) drawn from their seeds."""
    import yaml
    from datasets import Value

    data_spec = EMBEDDED_TASK_DATA.replace("n=500", f"n={n}")
    samples = load_samples(data_spec)
    out_dir, name = _task_folder(out_dir, EMBEDDED_TASK)
    columns, features = _text_columns(samples)
    columns |= {"split": ["test"] * n, "seed": [0] * n, "index": list(range(n)), "size": [224] * n}
    features |= {"split": Value("string"), "seed": Value("int64"), "index": Value("int64"), "size": Value("int64")}
    config = yaml.safe_dump(task_config(name, data_spec), sort_keys=False)
    config = config.replace("doc_to_visual: image\n", "doc_to_visual: !function utils.scene_image\n")
    (out_dir / "utils.py").write_text(SCENE_UTILS)
    return _write(out_dir, name, columns, features, config)


def main(args: argparse.Namespace) -> int:
    """`explainprune export-task`."""
    samples = load_samples(args.data)
    path = export_task(samples, args.data, args.out, args.name)
    name = path.stem
    print(f"wrote {len(samples)} questions to {path.parent}")
    print(f"lmms-eval --model explainprune --model_args pretrained=embedded --tasks {name} --include_path {path.parent}")
    return 0
