"""Frozen-backbone features, computed once per (catalogue images, backbone, weights, input size, split) and
cached on disk as a float16 .npy (memory-mapped on reuse).

The cache key hashes everything that changes the features, including each image file's size and modification
time, so editing a photo, changing the input size, the number of fine-tuned blocks or the preprocessing spec's
version computes a new cache.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from huse_edge._tf import keras, tf
from huse_edge.atomic import atomic_path
from huse_edge.catalogue import Product
from huse_edge.model import HuseModel, SplitViews
from huse_edge.pixels import pixel_batches
from huse_edge.transform import SPEC_VERSION as PREPROCESSING_VERSION

# Forward passes only, so not the fine-tune's batch: 128 photos a call amortise `predict_on_batch`'s own cost (the
# mirrored training photos took 1.3 ms each instead of 1.8-2.0 in batches of 64 on 4,096 real photos, Intel Xeon
# without AMX); the outputs are the same bits in any batch size (tests/test_features.py).
BATCH_SIZE = 128


def frozen_outputs(model: keras.Model, pixels: np.ndarray, batch_size: int = BATCH_SIZE, mirror: bool = False,
                   rows: np.ndarray | None = None,
                   advance: Callable[[int], None] = lambda done: None) -> np.ndarray | list[np.ndarray]:
    """`model`'s outputs over uint8 photos, in batches, as float16 (what the feature cache stores), one array per
    output of a model with several; `mirror` flips every photo left to right first; `rows` selects photos of
    `pixels` (all by default) without copying them; `advance` is told the size of each batch done."""
    rows = np.arange(len(pixels)) if rows is None else rows
    several = isinstance(model.output_shape, list)
    outs = [np.empty((len(rows), *shape[1:]), np.float16)
            for shape in (model.output_shape if several else [model.output_shape])]
    for start in range(0, len(rows), batch_size):
        batch = pixels[rows[start: start + batch_size]]
        values = model.predict_on_batch(tf.cast(batch[:, :, ::-1] if mirror else batch, tf.float32))
        for out, value in zip(outs, values if several else [values]):
            out[start: start + len(batch)] = value
        advance(len(batch))
    return outs if several else outs[0]


def cache_key(model: HuseModel, products: Sequence[Product]) -> str:
    config = model.config
    digest = hashlib.sha256(json.dumps({
        "backbone": config.backbone, "source": model.backbone_source, "size": [config.image_height, config.image_width],
        "trainable_blocks": config.trainable_blocks, "shape": list(model.feature_extractor.output_shape[1:]),
        "preprocessing": PREPROCESSING_VERSION,
        "weights": _weights_digest(model.feature_extractor),
        # graph execution (predict_on_batch); eager calls round 0.8% of the float16 features the other way
        "execution": "graph",
    }, sort_keys=True).encode())
    for product in products:
        stat = product.image.stat()
        digest.update(f"{product.image}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _weights_digest(model: keras.Model) -> str:
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()


def cached_features(model: HuseModel, products: Sequence[Product], cache_dir: str | Path,
                    batch_size: int = BATCH_SIZE, pixels: np.ndarray | None = None) -> np.ndarray:
    """Backbone-bottom outputs for `products`, read from the cache or computed (with a progress bar) and cached.
    `pixels`, the products' images already decoded by `load_pixels`, spares decoding them a second time."""
    return _features_at(_cache_path(model, products, cache_dir), model, products, batch_size, pixels)


def _features_at(path: Path, model: HuseModel, products: Sequence[Product], batch_size: int,
                 pixels: np.ndarray | None) -> np.ndarray:
    """`cached_features` once the cache's `path` is known: the key stats every photo and hashes the weights, so
    it is computed once per call."""
    if path.is_file():
        print(f"features: reusing cache {path}")
        return np.load(path, mmap_mode="r")
    config = model.config
    batches = pixel_batches([p.image for p in products], config.image_height, config.image_width, batch_size) \
        if pixels is None else (pixels[start: start + batch_size] for start in range(0, len(pixels), batch_size))

    def fill(out: np.ndarray, advance: Callable[[int], None]) -> None:
        row = 0
        for batch in batches:
            out[row: row + len(batch)] = model.feature_extractor.predict_on_batch(tf.cast(batch, tf.float32))
            row += len(batch)
            advance(len(batch))

    return _compute_cache(model, path, len(products), fill)


def features_and_early_outputs(model: HuseModel, views: SplitViews, products: Sequence[Product],
                               cache_dir: str | Path, pixels: np.ndarray, rows: dict[str, np.ndarray],
                               batch_size: int = BATCH_SIZE) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The cached features of `products` (as `cached_features`) and, for each of `rows` (row numbers into
    `pixels`, which together cover every product once), the outputs of `views.early` as `frozen_outputs` gives
    them. Without a cache both come from one pass (`views.early_and_features`), so the early blocks run once per
    photo instead of twice; the features are the same bits either way."""
    covered = np.zeros(len(products), bool)
    covered[np.concatenate(list(rows.values()))] = True
    if not covered.all() or sum(map(len, rows.values())) != len(products):
        raise ValueError("rows must hold every product exactly once")
    path = _cache_path(model, products, cache_dir)
    if views.early_and_features is None or path.is_file():
        features = _features_at(path, model, products, batch_size, pixels)
        start = time.perf_counter()
        early = {name: frozen_outputs(views.early, pixels, batch_size, rows=row) for name, row in rows.items()}
        print(f"features: the frozen early blocks' outputs of {len(products)} images in "
              f"{time.perf_counter() - start:.0f} s")
        return features, early
    early = {}

    def fill(out: np.ndarray, advance: Callable[[int], None]) -> None:
        for name, row in rows.items():
            early[name], out[row] = frozen_outputs(views.early_and_features, pixels, batch_size, rows=row,
                                                   advance=advance)

    return _compute_cache(model, path, len(products), fill), early


def _cache_path(model: HuseModel, products: Sequence[Product], cache_dir: str | Path) -> Path:
    if model.feature_extractor is None:
        raise ValueError("this backbone has no frozen part; train from pixels instead")
    return Path(cache_dir) / f"features-{cache_key(model, products)}.npy"


def _compute_cache(model: HuseModel, path: Path, count: int,
                   fill: Callable[[np.ndarray, Callable[[int], None]], None]) -> np.ndarray:
    """Writes the feature cache at `path` (atomically) with `fill(out, advance)`, which stores every product's
    features in `out` and reports each batch done through `advance`."""
    config = model.config
    shape = (count, *model.feature_extractor.output_shape[1:])
    print(f"features: computing {shape[1:]} {config.backbone} features of {count} images "
          f"at {config.image_height}x{config.image_width} -> {path}")
    progress = keras.utils.Progbar(count, unit_name="image", interval=10.0)
    start = time.perf_counter()
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        fill(out, progress.add)
        out.flush()
        del out
    seconds = time.perf_counter() - start
    print(f"features: {count / seconds:.0f} products/s ({seconds:.0f} s)")
    return np.load(path, mmap_mode="r")
