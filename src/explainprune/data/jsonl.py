"""Samples from a JSON-lines file: {"image": path, "question": ..., "answer": ...} per line.

Optional keys: "id" (a string or integer, unique in the file; default FILE-LINE) and "qtype". Image
paths may be relative to the file's directory. Every mistake is refused with its file and line.
"""

from __future__ import annotations

import json
from pathlib import Path

from explainprune.data.images import read_image
from explainprune.data.sample import Sample
from explainprune.errors import ExplainPruneError

REQUIRED_KEYS = ("image", "question", "answer")


def load_jsonl(path: str | Path) -> list[Sample]:
    """Read the samples of a JSON-lines file; an empty file or any bad line is refused."""
    path = Path(path)
    if not path.is_file():
        raise ExplainPruneError(f"jsonl file not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ExplainPruneError(f"{path} is not a UTF-8 text file of JSON lines") from None
    samples, lines_of_ids = [], {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        sample = _sample(path, where, line, f"{path.stem}-{line_number}")
        if sample.id in lines_of_ids:
            raise ExplainPruneError(f"{where}: id {sample.id!r} repeats line {lines_of_ids[sample.id]}; ids must be unique")
        lines_of_ids[sample.id] = line_number
        samples.append(sample)
    if not samples:
        raise ExplainPruneError(f"{path} holds no samples: write one JSON object per line with {', '.join(REQUIRED_KEYS)}")
    return samples


def _sample(path: Path, where: str, line: str, default_id: str) -> Sample:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ExplainPruneError(f"{where}: invalid JSON ({error.msg})") from None
    if not isinstance(record, dict):
        raise ExplainPruneError(f"{where}: expected a JSON object with {', '.join(REQUIRED_KEYS)}, got {type(record).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise ExplainPruneError(f"{where}: missing key(s) {', '.join(missing)}")
    image, question, answer = record["image"], record["question"], record["answer"]
    if not isinstance(image, str) or not image.strip():
        raise ExplainPruneError(f"{where}: image must be a path (a non-empty string), got {image!r}")
    if not isinstance(question, str) or not question.strip():
        raise ExplainPruneError(f"{where}: question must be a non-empty string, got {question!r}")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise ExplainPruneError(
            f"{where}: answer must be a string or a number, got {json.dumps(answer)}; write the expected answer, "
            "e.g. \"answer\": \"red\""
        )
    sample_id = record.get("id", default_id)
    if isinstance(sample_id, bool) or not isinstance(sample_id, (str, int)) or not str(sample_id).strip():
        raise ExplainPruneError(f"{where}: id must be a non-empty string or an integer, got {sample_id!r}")
    qtype = record.get("qtype")
    if qtype is not None and not isinstance(qtype, str):
        raise ExplainPruneError(f"{where}: qtype must be a string, got {qtype!r}")
    try:
        rgb = read_image(path.parent / image)
    except ExplainPruneError as error:
        raise ExplainPruneError(f"{where}: {error}") from None
    return Sample(str(sample_id), rgb, question, str(answer).strip().lower(), qtype)
