"""Crash-safe writes: every artifact is written beside its destination and renamed into place.

A reader, or a process killed at any moment, sees either the old artifact or the complete new one. Only an earlier
artifact of the same kind is replaced: a file never replaces a directory, and a directory artifact (a bundle, the
app's assets, golden vectors, shards) replaces only an empty directory or one holding its marker file, so that an
`--out` or `--report` that names a folder of the user's does not delete it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


class ArtifactPathError(ValueError):
    """A destination that holds something other than an earlier artifact of the kind being written."""


def check_destination(destination: str | Path, marker: str | None = None) -> None:
    """Refuses a destination that writing there would destroy: a directory, for a file artifact (`marker` None);
    for a directory artifact marked by the file `marker`, a file or a non-empty directory without that file."""
    destination = Path(destination)
    if marker is None:
        if destination.is_dir():
            raise ArtifactPathError(f"{destination} is a directory; name a file to write")
    elif destination.exists() and not destination.is_dir():
        raise ArtifactPathError(f"{destination} is a file; name a directory to write")
    elif destination.is_dir() and any(destination.iterdir()) and not (destination / marker).is_file():
        raise ArtifactPathError(f"{destination} is a directory with other contents (no {marker}); name a new or "
                                "empty directory, or an earlier one of these to replace")


@contextlib.contextmanager
def atomic_path(destination: str | Path, marker: str | None = None) -> Iterator[Path]:
    """Yields a temporary path next to `destination`, a file or, with `marker` (the file that marks an artifact of
    its kind), a directory; renames it there on success (see `check_destination`)."""
    destination = Path(destination)
    check_destination(destination, marker)
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

