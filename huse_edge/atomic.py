"""Crash-safe writes: every artifact is written beside its destination and renamed into place.

A reader, or a process killed at any moment, sees either the old artifact or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(destination: str | Path) -> Iterator[Path]:
    """Yields a temporary path (file or directory) next to `destination`; renames it there on success."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent))
    target = tmp / destination.name
    try:
        yield target
        if destination.is_dir() and not destination.is_symlink():
            old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
            os.replace(destination, old)
            os.replace(target, destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, destination)
        _fsync_dir(destination.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(destination: str | Path, text: str) -> None:
    with atomic_path(destination) as tmp:
        tmp.write_text(text, encoding="utf-8")

