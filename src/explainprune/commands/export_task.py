"""`explainprune export-task`: options."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write a data spec as a movable lmms-eval task folder (parquet + YAML, exact-match scoring)"
RUN = "explainprune.integrations.lmms_eval.tasks:main"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="data spec, e.g. synthetic:split=test,seed=0,n=500,size=224 or a .jsonl file")
    parser.add_argument("--out", type=Path, required=True, help="task folder to write (created; must be empty if it exists)")
    parser.add_argument("--name", default=None, help="lmms-eval task name (default: the folder's name)")
