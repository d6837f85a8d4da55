"""Sharded catalogues: TFRecord files that stream a catalogue too large for memory, and split it between workers.

Format (version 1) - a directory written by `huse-edge data shard CATALOGUE --out DIR`:
- `shards.json`: {"format": "huse-edge-shards", "version": 1, "source", "products", "category_depth",
  "files": [{"name", "products", "sha256"}]}.
- `products.jsonl`: one line per product, `{"id", "title", "category", "image_name"}`, so that labels and the
  vocabulary are built without reading a single photo.
- `products-00000-of-00008.tfrecord`, ...: one `tf.train.Example` per product with the bytes features `id`,
  `title` (UTF-8), `category` (the path, top level first, one value per level), `image` (the photo file's bytes,
  exactly as in the catalogue: the model input size is a training choice, not the data's) and `image_name` (its
  path in the source catalogue). Training reads only `id` and `image`; the rest keeps each file self-describing.
Rows are validated as for any catalogue (bad rows are reported and left out) and dealt round-robin to the files
in catalogue order, so every file holds each split and class in proportion; the split is still decided by
`sha1(id)`. Under `--strategy multi-worker` every worker reads the files and keeps its part of each global batch
(see `distribute.shard_by_data`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from huse_edge._tf import tf
from huse_edge.atomic import atomic_path
from huse_edge.bundle import sha256_of
from huse_edge.catalogue import Catalogue, CatalogueError, Columns, Product, read_catalogue
from huse_edge.transform import load_rgb, preprocess

MANIFEST = "shards.json"
METADATA = "products.jsonl"
FORMAT = "huse-edge-shards"
VERSION = 1
_IMAGE = {"id": tf.io.FixedLenFeature([], tf.string), "image": tf.io.FixedLenFeature([], tf.string)}


def is_shard_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def _bytes(*values: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def write_shards(catalogue_path: str | Path, out_dir: str | Path, num_files: int, columns: Columns = Columns(),
                 strict: bool = False) -> tuple[dict, Catalogue]:
    """Validates the catalogue and writes it as `num_files` TFRecord files; the directory appears complete or not
    at all. Returns the manifest and the catalogue read (for its row reports)."""
    if num_files < 1:
        raise ValueError("the number of shard files must be at least 1")
    catalogue = read_catalogue(catalogue_path, columns, strict=strict)
    names = [f"products-{i:05d}-of-{num_files:05d}.tfrecord" for i in range(num_files)]
    with atomic_path(out_dir, MANIFEST) as tmp:
        tmp.mkdir()
        writers = [tf.io.TFRecordWriter(str(tmp / name)) for name in names]
        root = Path(catalogue_path).parent.resolve()
        for n, product in enumerate(catalogue.products):
            example = tf.train.Example(features=tf.train.Features(feature={
                "id": _bytes(product.id.encode()), "title": _bytes(product.title.encode()),
                "category": _bytes(*(level.encode() for level in product.path)),
                "image": _bytes(product.image.read_bytes()),
                "image_name": _bytes(str(product.image.relative_to(root)).encode())}))
            writers[n % num_files].write(example.SerializeToString())
        for writer in writers:
            writer.close()
        with (tmp / METADATA).open("w", encoding="utf-8") as stream:
            for product in catalogue.products:
                stream.write(json.dumps({"id": product.id, "title": product.title, "category": list(product.path),
                                         "image_name": str(product.image.relative_to(root))},
                                        ensure_ascii=False) + "\n")
        manifest = {
            "format": FORMAT, "version": VERSION, "source": str(catalogue_path), "products": len(catalogue.products),
            "category_depth": len(catalogue.products[0].path),
            "files": [{"name": name, "products": len(range(i, len(catalogue.products), num_files)),
                       "sha256": sha256_of(tmp / name)} for i, name in enumerate(names)],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest, catalogue


def _manifest(directory: Path) -> dict:
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CatalogueError(f"{directory / MANIFEST}: unreadable shard manifest ({error})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CatalogueError(f"{directory / MANIFEST}: not a {FORMAT} v{VERSION} manifest")
    return manifest


def shard_files(directory: str | Path) -> list[str]:
    directory = Path(directory)
    files = [directory / entry["name"] for entry in _manifest(directory)["files"]]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CatalogueError(f"{directory}: shard file(s) missing: {', '.join(missing)}")
    return [str(f) for f in files]


def read_shard_catalogue(directory: str | Path) -> Catalogue:
    """The products of a shard directory, from its metadata file (no photo is read). `Product.image` is the
    photo's path in the source catalogue, `Product.row` the line in `products.jsonl`."""
    directory = Path(directory)
    shard_files(directory)
    products = []
    try:
        with (directory / METADATA).open(encoding="utf-8") as stream:
            for row, line in enumerate(stream, start=1):
                record = json.loads(line)
                products.append(Product(record["id"], record["title"], Path(record["image_name"]),
                                        tuple(record["category"]), row))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CatalogueError(f"{directory / METADATA}: unreadable product metadata "
                             f"(line {len(products) + 1}: {type(error).__name__}: {error})") from None
    if not products:
        raise CatalogueError(f"{directory}: the shards hold no products")
    return Catalogue(directory, products)


def _decode(data: bytes, height: int, width: int) -> np.ndarray:
    """The same decode and resize as for a photo file (see `transform`)."""
    return preprocess(load_rgb(io.BytesIO(data)), height, width)


def stream_images(files: list[str], height: int, width: int, shuffle_files: bool = False,
                  seed: int = 0) -> tf.data.Dataset:
    """(id, uint8 pixels) per product, read file after file (in a shuffled file order when asked)."""
    files_dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        files_dataset = files_dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

    def parse(record):
        example = tf.io.parse_single_example(record, _IMAGE)
        pixels = tf.numpy_function(lambda data: _decode(data, height, width), [example["image"]], tf.uint8,
                                   stateful=False)
        return example["id"], tf.ensure_shape(pixels, (height, width, 3))

    return (files_dataset.interleave(tf.data.TFRecordDataset, cycle_length=1)
            .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))
