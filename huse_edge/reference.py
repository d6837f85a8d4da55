"""The float Keras model's outputs on a split, recorded so that `huse-edge verify` runs where TensorFlow does not.

`verify` holds every backend to the float Keras model, and the machine that matters most, the edge board, has
LiteRT or tflite-runtime but no TensorFlow. So the training machine records the float outputs once
(`verify ... --save-reference FILE`) and the board reads them (`verify BUNDLE CATALOGUE --reference FILE`): it
decodes the same products' photos and tokenises their titles with the bundle's own preprocessing, as the app does,
and compares its backends with the recorded outputs.

File: an `.npz` without pickle: `header` (JSON: format, version, split, the catalogue and its columns, the
sha256 of every bundle file), `ids` and `labels` of the products in order, and `output_<name>` for each of the
network's `OUTPUTS`. A reference belongs to one export: a bundle whose files differ from the recorded ones is
refused, as its model may not be the one whose outputs were recorded.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from huse_edge.atomic import atomic_path
from huse_edge.bundle import Bundle
from huse_edge.catalogue import Columns, Product, read_catalogue
from huse_edge.pixels import load_pixels
from huse_edge.recipe import OUTPUTS
from huse_edge.tokenizer import Tokenizer

FORMAT = "huse-edge verify reference"
VERSION = 1


class ReferenceFileError(ValueError):
    """A reference file that cannot be read, or that belongs to another bundle or catalogue."""


@dataclass
class ReferenceRun:
    """A split's products, their model inputs and labels, and the float Keras model's outputs on them."""

    products: list[Product]
    images: np.ndarray
    tokens: np.ndarray
    labels: np.ndarray
    outputs: dict[str, np.ndarray]
    split: str
    catalogue: Path
    columns: Columns


def product_inputs(products: Sequence[Product], height: int, width: int,
                   tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 pixels, int32 tokens) of products, through the edge runtime's preprocessing."""
    return load_pixels([p.image for p in products], height, width), tokenizer.encode_batch(p.title for p in products)


def save_reference(run: ReferenceRun, path: str | Path, bundle: Bundle) -> None:
    """Writes `run`'s products and float outputs, tied to `bundle`'s files."""
    header = {"format": FORMAT, "version": VERSION, "split": run.split, "catalogue": str(run.catalogue),
              "columns": run.columns.to_dict(), "bundle_files": bundle.manifest["files"]}
    arrays = {"header": np.array(json.dumps(header)), "ids": np.array([p.id for p in run.products], dtype=str),
              "labels": np.asarray(run.labels, np.int32),
              **{f"output_{name}": np.asarray(run.outputs[name], np.float32) for name in OUTPUTS}}
    with atomic_path(path) as tmp, tmp.open("wb") as stream:
        np.savez(stream, **arrays)


def load_reference(path: str | Path, bundle: Bundle, variant: str, catalogue: str | Path | None = None,
                   max_products: int | None = None) -> ReferenceRun:
    """The recorded run, its products read from `catalogue` (default: the recorded path) and preprocessed by
    `bundle`; refused when the bundle's `variant` is not the export it was recorded with."""
    path = Path(path)
    recorded = _read(path)
    changed = sorted(name for name, digest in bundle.manifest["files"].items()
                     if recorded.bundle_files.get(name, digest) != digest)
    model = bundle.model_file(variant).relative_to(bundle.path).as_posix()  # an unknown variant: BundleError
    if changed or model not in recorded.bundle_files:
        differs = (", ".join(changed[:3]) + (f" and {len(changed) - 3} more files differ" if len(changed) > 3
                                              else " differ")) if changed else f"{model} was not in it"
        raise ReferenceFileError(f"{path}: recorded with another export than {bundle.path} ({differs}); record it "
                                 "again with this bundle: huse-edge verify BUNDLE CATALOGUE --save-reference FILE")
    catalogue = Path(catalogue or recorded.catalogue)
    by_id = {p.id: p for p in read_catalogue(catalogue, recorded.columns).products}
    ids = recorded.ids
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ReferenceFileError(f"{path}: {len(missing)} of its {len(ids)} products are not in {catalogue} "
                                 f"(ids {', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    kept = slice(max_products or None)  # no limit, as for --max-products 0 beside Keras
    products = [by_id[i] for i in ids[kept]]
    images, tokens = product_inputs(products, bundle.image_height, bundle.image_width, bundle.tokenizer)
    return ReferenceRun(products, images, tokens, recorded.labels[kept],
                        {k: v[kept] for k, v in recorded.outputs.items()}, recorded.split, catalogue,
                        recorded.columns)


@dataclass
class _Recorded:
    split: str
    catalogue: str
    columns: Columns
    bundle_files: dict[str, str]
    ids: list[str]
    labels: np.ndarray
    outputs: dict[str, np.ndarray]


def _read(path: Path) -> _Recorded:
    unreadable = f"{path}: not a {FORMAT} of version {VERSION}"
    if not zipfile.is_zipfile(path):
        raise ReferenceFileError(f"{unreadable} (not an .npz file)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            header = json.loads(str(stored["header"]))
            ids, labels = [str(i) for i in stored["ids"]], stored["labels"]
            outputs = {name: stored[f"output_{name}"] for name in OUTPUTS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ReferenceFileError(f"{unreadable} ({type(error).__name__}: {error})") from None
    try:
        if (header["format"], header["version"]) != (FORMAT, VERSION) or not isinstance(header["bundle_files"], dict):
            raise ValueError("another format")
        columns = Columns.from_dict(header["columns"])
        recorded = _Recorded(str(header["split"]), str(header["catalogue"]), columns, header["bundle_files"], ids,
                             labels, outputs)
    except (TypeError, KeyError, ValueError) as error:
        raise ReferenceFileError(f"{unreadable} (its header {str(header)[:80]!r}: {error})") from None
    if any(len(v) != len(ids) for v in (labels, *outputs.values())):
        raise ReferenceFileError(f"{path}: its arrays do not all hold {len(ids)} products")
    return recorded
