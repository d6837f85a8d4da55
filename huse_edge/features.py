"""Frozen-backbone features, computed once per (catalogue images, backbone, weights, input size, split) and
cached on disk as a float16 .npy (memory-mapped on reuse).

The cache key hashes everything that changes the features, including each image file's size and modification
time, so editing a photo, changing the input size or the number of fine-tuned blocks computes a new cache.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from huse_edge._tf import keras, tf
from huse_edge.atomic import atomic_path
from huse_edge.catalogue import Product
from huse_edge.model import HuseModel
from huse_edge.transform import preprocess


def pixels_dataset(paths: Sequence[Path], height: int, width: int, batch_size: int) -> tf.data.Dataset:
    """Decoded, resized uint8 images in a parallel, prefetching tf.data pipeline (see `transform` for the spec)."""

    def load(path):
        return preprocess(path.decode("utf-8"), height, width)

    def load_tensor(path):
        image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, (height, width, 3))

    return (tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
            .map(load_tensor, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def load_pixels(paths: Sequence[Path], height: int, width: int, batch_size: int = 256) -> np.ndarray:
    """All images as one (N, height, width, 3) uint8 array, decoded through `pixels_dataset`."""
    batches = [b.numpy() for b in pixels_dataset(paths, height, width, batch_size)]
    return np.concatenate(batches) if batches else np.zeros((0, height, width, 3), np.uint8)


def frozen_outputs(model: keras.Model, pixels: np.ndarray, batch_size: int = 64, mirror: bool = False,
                   rows: np.ndarray | None = None) -> np.ndarray:
    """`model`'s outputs over uint8 photos, in batches, as float16 (what the feature cache stores); `mirror` flips
    every photo left to right first; `rows` selects photos of `pixels` (all by default) without copying them."""
    rows = np.arange(len(pixels)) if rows is None else rows
    out = np.empty((len(rows), *model.output_shape[1:]), np.float16)
    for start in range(0, len(rows), batch_size):
        batch = pixels[rows[start: start + batch_size]]
        out[start: start + len(batch)] = model.predict_on_batch(
            tf.cast(batch[:, :, ::-1] if mirror else batch, tf.float32))
    return out


def cache_key(model: HuseModel, products: Sequence[Product]) -> str:
    config = model.config
    digest = hashlib.sha256(json.dumps({
        "backbone": config.backbone, "source": model.backbone_source, "size": [config.image_height, config.image_width],
        "trainable_blocks": config.trainable_blocks, "shape": list(model.feature_extractor.output_shape[1:]),
        "weights": _weights_digest(model.feature_extractor),
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
                    batch_size: int = 64, pixels: np.ndarray | None = None) -> np.ndarray:
    """Backbone-bottom outputs for `products`, read from the cache or computed (with a progress bar) and cached.
    `pixels`, the products' images already decoded by `load_pixels`, spares decoding them a second time."""
    if model.feature_extractor is None:
        raise ValueError("this backbone has no frozen part; train from pixels instead")
    path = Path(cache_dir) / f"features-{cache_key(model, products)}.npy"
    if path.is_file():
        print(f"features: reusing cache {path}")
        return np.load(path, mmap_mode="r")
    config = model.config
    shape = (len(products), *model.feature_extractor.output_shape[1:])
    print(f"features: computing {shape[1:]} {config.backbone} features of {len(products)} images "
          f"at {config.image_height}x{config.image_width} -> {path}")
    progress = keras.utils.Progbar(len(products), unit_name="image", interval=10.0)
    start = time.perf_counter()
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        row = 0
        batches = pixels_dataset([p.image for p in products], config.image_height, config.image_width,
                                 batch_size) if pixels is None else \
            (pixels[start: start + batch_size] for start in range(0, len(pixels), batch_size))
        for batch in batches:
            values = model.feature_extractor(tf.cast(batch, tf.float32), training=False).numpy()
            out[row: row + len(values)] = values
            row += len(values)
            progress.update(row)
        out.flush()
        del out
    seconds = time.perf_counter() - start
    print(f"features: {len(products) / seconds:.0f} products/s ({seconds:.0f} s)")
    return np.load(path, mmap_mode="r")
