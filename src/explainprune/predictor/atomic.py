"""Atomic file writes: a file is either absent, the old version or the complete new version."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temp_path)` on a temp file next to `path`, then move it onto `path`."""
    path = Path(path)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    temp_path = Path(temp_name)
    try:
        write(temp_path)
        sync_fd = os.open(temp_path, os.O_RDONLY)
        try:
            os.fsync(sync_fd)
        finally:
            os.close(sync_fd)
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: object) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write(path, lambda temp: temp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def remove_stale_temp_files(directory: Path) -> None:
    """Delete temp files that `atomic_write` left behind when the process was killed."""
    for stale in Path(directory).glob(f".*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)
