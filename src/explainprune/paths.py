"""Where outputs go: refuse, before any work, an output path that cannot be written as asked."""

from __future__ import annotations

from pathlib import Path

from .errors import ExplainPruneError


def _blocking_file(path: Path) -> Path | None:
    """The first existing non-directory among `path`'s parents (it would block creating `path`)."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def output_directory(path: str | Path) -> Path:
    """`path` as a directory to create or reuse; refused if it, or one of its parents, is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ExplainPruneError(f"{path} is a file, not a directory: choose another output directory")
    blocking = _blocking_file(path)
    if blocking is not None:
        raise ExplainPruneError(f"{path} cannot be created: {blocking} is a file")
    return path


def output_file(path: str | Path) -> Path:
    """`path` as a file to (over)write; refused if it is a directory or a parent is a file."""
    path = Path(path)
    if path.is_dir():
        raise ExplainPruneError(f"{path} is a directory: give a file name")
    blocking = _blocking_file(path)
    if blocking is not None:
        raise ExplainPruneError(f"{path} cannot be created: {blocking} is a file")
    return path
