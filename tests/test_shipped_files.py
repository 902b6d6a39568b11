"""What ships carries nothing of the machine it was made on."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.])(/work/|/root/|/home/\w|/tmp/|/Users/\w|[A-Z]:\\\\)")
TEXT_SUFFIXES = {".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".toml", ".cfg"}


def shipped_text_files():
    for base in (ROOT / "src", ROOT / "docs"):
        for path in base.rglob("*"):
            if path.suffix in TEXT_SUFFIXES and path.is_file() and "egg-info" not in str(path):
                yield path
    yield ROOT / "README.md"


def test_no_shipped_file_names_a_machine_path():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in shipped_text_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert not offenders, f"machine paths in shipped files: {offenders}"
