"""Model input pixels of many photos at once, decoded on every core.

Decoding and resizing (`transform.preprocess`) run in Python and numpy and hold the GIL for most of a photo, so
threads do not run them in parallel: a tf.data map over `tf.numpy_function` was slower than a plain loop (README,
Training throughput). Worker processes do. They are fresh `python -c` processes that import only numpy and Pillow
and talk in plain `frames`: neither forked from a caller that may be running TensorFlow's threads, nor started by
multiprocessing, whose spawned workers re-import the caller's main module (a script without a `__main__` guard
would train again in every worker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from huse_edge.frames import read_frame, write_frame
from huse_edge.transform import ImageError, preprocess

# Starting a worker costs about a quarter of a second (a Python that imports numpy and Pillow), which fewer photos
# than this per worker do not repay (a photo takes about 0.5 ms).
MIN_PHOTOS_PER_WORKER = 1024


def worker_count(photos: int) -> int:
    """How many worker processes decode `photos` photos: one per core this process may run on, or none (0 or 1:
    decoded here) when there are too few photos to repay their start."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, photos // MIN_PHOTOS_PER_WORKER)


def _preprocess_all(paths: Sequence[str | Path], height: int, width: int) -> np.ndarray:
    out = np.empty((len(paths), height, width, 3), np.uint8)
    for row, path in enumerate(paths):
        out[row] = preprocess(path, height, width)
    return out


class _Worker:
    """One decoding process; it answers its requests in the order they were sent."""

    def __init__(self):
        self._process = subprocess.Popen([sys.executable, "-c", "from huse_edge.pixels import serve; serve()"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._busy = False

    def send(self, paths: Sequence[str | Path], height: int, width: int) -> None:
        request = {"paths": [str(p) for p in paths], "height": height, "width": width}
        write_frame(self._process.stdin, b"R", json.dumps(request).encode())
        self._busy = True

    def receive(self, count: int, height: int, width: int) -> np.ndarray:
        status, payload = read_frame(self._process.stdout)
        self._busy = False
        if status == b"E":
            raise ImageError(payload.decode())
        if status != b"K":
            raise RuntimeError(f"a photo-decoding worker died (exit code {self._process.wait()})")
        return np.frombuffer(payload, np.uint8).reshape(count, height, width, 3)

    def close(self) -> None:
        """Ends the worker: at once if it is decoding a batch nobody will read (the consumer stopped early)."""
        if self._busy:
            self._process.kill()
        self._process.stdin.close()
        self._process.wait()
        self._process.stdout.close()


def serve() -> None:
    """The worker side of `_Worker`: each request's photos as raw uint8 bytes, or the error of the first bad one."""
    reader, writer = sys.stdin.buffer, sys.stdout.buffer
    while True:
        status, payload = read_frame(reader)
        if not status:
            return
        request = json.loads(payload)
        try:
            pixels = _preprocess_all(request["paths"], request["height"], request["width"])
        except ImageError as error:
            write_frame(writer, b"E", str(error).encode())
            continue
        write_frame(writer, b"K", pixels.tobytes())


def pixel_batches(paths: Sequence[str | Path], height: int, width: int, batch_size: int) -> Iterator[np.ndarray]:
    """(n, height, width, 3) uint8 batches of `preprocess`ed photos, in order. Each worker decodes one batch ahead
    of the consumer at most, so a slow consumer does not hold the whole catalogue in memory."""
    batches = [paths[start: start + batch_size] for start in range(0, len(paths), batch_size)]
    count = worker_count(len(paths))
    if count < 2:
        yield from (_preprocess_all(batch, height, width) for batch in batches)
        return
    workers = [_Worker() for _ in range(count)]
    try:
        for index, batch in enumerate(batches[: len(workers)]):
            workers[index].send(batch, height, width)
        for index, batch in enumerate(batches):
            worker = workers[index % len(workers)]
            pixels = worker.receive(len(batch), height, width)
            if index + len(workers) < len(batches):
                worker.send(batches[index + len(workers)], height, width)
            yield pixels
    finally:
        for worker in workers:
            worker.close()


def load_pixels(paths: Sequence[str | Path], height: int, width: int, batch_size: int = 256) -> np.ndarray:
    """All photos as one (N, height, width, 3) uint8 array."""
    out = np.empty((len(paths), height, width, 3), np.uint8)
    row = 0
    for batch in pixel_batches(paths, height, width, batch_size):
        out[row: row + len(batch)] = batch
        row += len(batch)
    return out
