"""Messages between a process and a worker it started, over the worker's stdin and stdout: a status byte, then a
length-prefixed payload. Plain bytes, never pickle, so neither side runs code the other sent; and the worker is a
fresh `python -c` that imports only what it serves (not TensorFlow, not the caller's main module)."""

from __future__ import annotations

import struct
from typing import BinaryIO


def write_frame(stream: BinaryIO, status: bytes, payload: bytes) -> None:
    stream.write(status + struct.pack("<Q", len(payload)) + payload)
    stream.flush()


def read_frame(stream: BinaryIO) -> tuple[bytes, bytes]:
    """(status, payload); (b"", b"") once the other side has closed the stream."""
    status = stream.read(1)
    if not status:
        return b"", b""
    (length,) = struct.unpack("<Q", stream.read(8))
    return status, stream.read(length)
