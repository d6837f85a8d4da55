"""Reads a PyTorch `state_dict` checkpoint into numpy arrays without PyTorch and without arbitrary unpickling.

Only the handful of globals a plain tensor state dict needs are allowed (OrderedDict, the tensor rebuild function
and the typed storages); anything else in the pickle is refused. Both the legacy (torch < 1.6) stream format and
the current zip format are understood.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a readable tensor state dict."""


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass
class _Storage:
    key: str
    dtype: type
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise CheckpointError(f"storage {self.storage.key} has no data")
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.shape, strides=tuple(s * itemsize for s in self.stride))
        return np.array(view)


def _rebuild_tensor(storage, offset, shape, stride, *_unused) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(shape), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream, storages: dict[str, _Storage]):
        super().__init__(stream)
        self._storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise CheckpointError(f"refusing to load {module}.{name}: only plain tensor state dicts are accepted")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"unexpected persistent id {pid!r}")
        key, numel = str(pid[2]), int(pid[4])
        return self._storages.setdefault(key, _Storage(key, pid[1].dtype, numel))


def _load_legacy(stream) -> tuple[object, dict[str, _Storage]]:
    storages: dict[str, _Storage] = {}
    if _RestrictedUnpickler(stream, storages).load() != _LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (bad magic number)")
    _RestrictedUnpickler(stream, storages).load()  # protocol version
    _RestrictedUnpickler(stream, storages).load()  # sys info: endianness, type sizes
    result = _RestrictedUnpickler(stream, storages).load()
    keys = _RestrictedUnpickler(stream, storages).load()
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", stream.read(8))
        raw = stream.read(numel * np.dtype(storage.dtype).itemsize)
        if numel != storage.numel or len(raw) != numel * np.dtype(storage.dtype).itemsize:
            raise CheckpointError(f"storage {key} is truncated")
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return result, storages


def _load_zip(archive: zipfile.ZipFile) -> tuple[object, dict[str, _Storage]]:
    storages: dict[str, _Storage] = {}
    pickle_name = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
    if pickle_name is None:
        raise CheckpointError("zip checkpoint without data.pkl")
    prefix = pickle_name[: -len("data.pkl")]
    result = _RestrictedUnpickler(io.BytesIO(archive.read(pickle_name)), storages).load()
    for storage in storages.values():
        storage.data = np.frombuffer(archive.read(f"{prefix}data/{storage.key}"), dtype=storage.dtype)
    return result, storages


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Returns `{name: array}` for a PyTorch state-dict checkpoint, refusing anything that is not plain tensors."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                result, _ = _load_zip(archive)
        else:
            with path.open("rb") as stream:
                result, _ = _load_legacy(stream)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, KeyError, struct.error, ValueError, OSError) as error:
        raise CheckpointError(f"{path}: unreadable checkpoint ({error})") from None
    if not isinstance(result, dict):
        raise CheckpointError(f"{path}: checkpoint holds a {type(result).__name__}, not a state dict")
    return {str(k): v.materialise() for k, v in result.items() if isinstance(v, _TensorRef)}
