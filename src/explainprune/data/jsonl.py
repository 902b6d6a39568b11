"""Samples from a JSON-lines file: {"image": path, "question": ..., "answer": ...} per line."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from explainprune.data.sample import Sample

REQUIRED_KEYS = ("image", "question", "answer")


def load_jsonl(path: str | Path) -> list[Sample]:
    """Read samples; image paths may be relative to the file's directory."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"jsonl file not found: {path}")
    samples = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_number}: invalid JSON ({error.msg})") from None
        missing = [key for key in REQUIRED_KEYS if key not in record]
        if missing:
            raise ValueError(f"{path}:{line_number}: missing key(s) {', '.join(missing)}")
        image_path = path.parent / record["image"]
        if not image_path.is_file():
            raise ValueError(f"{path}:{line_number}: image not found: {image_path}")
        with Image.open(image_path) as raw:
            image = raw.convert("RGB")
        samples.append(
            Sample(
                str(record.get("id", f"{path.stem}-{line_number}")),
                image,
                str(record["question"]),
                str(record["answer"]).strip().lower(),
                record.get("qtype"),
            )
        )
    return samples
