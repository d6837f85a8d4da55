"""`huse-edge index`: embed a catalogue with an edge bundle into a `ProductIndex`, or bring an existing index up
to date with the catalogue (new and changed products embedded, removed ones dropped, the rest kept as they are).

Large catalogues are indexed in parts: part I of N holds the products whose id hashes to I (`index.shard_of`), so
N processes - local (`--workers N`) or on N machines (`--shard I/N`) - each embed and update their own file, and
`search` reads the directory as one index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from huse_edge.atomic import check_destination
from huse_edge.bundle import Bundle, sha256_of
from huse_edge.catalogue import Columns, Product, read_catalogue
from huse_edge.index import (MODALITIES, IndexedProduct, IndexFileError, ProductIndex, fingerprint, fuse, normalise,
                             part_name, shard_of)
from huse_edge.runtime import HuseRuntime, RuntimeOptions
from huse_edge.transform import SPEC_VERSION as PREPROCESSING_VERSION


@dataclass(frozen=True)
class SyncReport:
    kept: int
    embedded: int
    removed: int
    seconds: float

    def __str__(self) -> str:
        rate = f", {self.embedded / self.seconds:.0f} products/s" if self.embedded and self.seconds else ""
        return (f"index: {self.kept} products kept, {self.embedded} embedded, {self.removed} removed "
                f"({self.seconds:.1f} s{rate})")


def bundle_identity(runtime: HuseRuntime) -> dict:
    """What an index's embeddings depend on: the exact model file that produced them, and the version of the
    preprocessing spec that prepared the photos for it."""
    model = runtime.bundle.model_file(runtime.variant)
    return {"path": str(runtime.bundle.path.resolve()), "variant": runtime.variant, "model_sha256": sha256_of(model),
            "preprocessing": PREPROCESSING_VERSION}


def embed_products(runtime: HuseRuntime, products: Sequence[Product], batch_size: int = 64,
                   progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Image, text and fused embeddings of products, through the bundle's own preprocessing and tokenizer;
    `progress` is told how many products each batch embedded."""
    parts: dict[str, list] = {m: [] for m in MODALITIES}
    for start in range(0, len(products), batch_size):
        batch = products[start: start + batch_size]
        image = normalise(runtime.embed_image([p.image for p in batch]))  # int8 outputs are only nearly unit
        text = normalise(runtime.embed_text([p.title for p in batch]))
        for modality, value in zip(MODALITIES, (image, text, fuse(image, text, runtime.bundle.fusion_image_weight))):
            parts[modality].append(value.astype(np.float32))
        if progress:
            progress(len(batch))
    dim = int(runtime.bundle.manifest["embedding_dim"])
    return {m: np.concatenate(v) if v else np.zeros((0, dim), np.float32) for m, v in parts.items()}


def sync_index(runtime: HuseRuntime, products: Sequence[Product], existing: ProductIndex | None = None,
               progress: Callable[[int], None] | None = None) -> tuple[ProductIndex, SyncReport]:
    """An index of exactly `products`, reusing the rows of `existing` whose fingerprint has not changed (none when
    another version of the preprocessing spec prepared its photos)."""
    start = time.perf_counter()
    identity = bundle_identity(runtime)
    if existing is not None and existing.bundle.get("model_sha256") != identity["model_sha256"]:
        raise IndexFileError("the index was built with another model "
                             f"({existing.bundle.get('path')}, {existing.bundle.get('variant')}); "
                             "rebuild it (--rebuild) to search with this bundle")
    if existing is not None and existing.bundle.get("preprocessing", 1) != PREPROCESSING_VERSION:
        existing = None  # its photos were prepared another way (indexes without the key predate version 2)
    entries = [IndexedProduct(p.id, p.title, tuple(p.path), str(p.image), fingerprint(p.title, p.path, p.image))
               for p in products]
    current = {e.id: e for e in entries}
    index = existing or ProductIndex([], {m: np.zeros((0, int(runtime.bundle.manifest["embedding_dim"])),
                                                          np.float32) for m in MODALITIES},
                                     identity, runtime.bundle.fusion_image_weight)
    stale = [p.id for p in index.products if p.id not in current or current[p.id].fingerprint != p.fingerprint]
    kept = len(index) - len(stale)
    index = index.without(stale) if stale else index
    known = {p.id for p in index.products}
    fresh = [(e, p) for e, p in zip(entries, products) if e.id not in known]
    if fresh:
        embeddings = embed_products(runtime, [p for _, p in fresh], progress=progress)
        index = index.extended([e for e, _ in fresh], embeddings)
    order = index.rows(e.id for e in entries)  # catalogue order, so a rebuild and an update give the same file
    index = ProductIndex([index.products[i] for i in order], {m: v[order] for m, v in index.embeddings.items()},
                         identity, runtime.bundle.fusion_image_weight)
    removed = len(stale) - sum(1 for i in stale if i in current)
    return index, SyncReport(kept, len(fresh), removed, time.perf_counter() - start)


def write_index(bundle: str | Path, products: Sequence[Product], out: Path, variant: str = "int8",
                backend: str = "litert", rebuild: bool = False, ann: bool = False,
                progress: Callable[[int], None] | None = None) -> tuple[ProductIndex, SyncReport]:
    """Builds or updates the index file `out` for exactly `products`."""
    check_destination(out)  # before the embedding, not after
    runtime = HuseRuntime(Bundle.load(bundle), variant, RuntimeOptions.from_label(backend))
    existing = ProductIndex.load(out) if out.exists() and not rebuild else None
    built, report = sync_index(runtime, products, existing, progress)
    if ann:
        for modality in MODALITIES:
            built.searcher(modality)
    built.save(out)
    return built, report


def write_index_part(bundle: str | Path, catalogue: str | Path, out_dir: Path, shard: int, shards: int,
                     columns: Columns = Columns(), variant: str = "int8", backend: str = "litert",
                     rebuild: bool = False, ann: bool = False, strict: bool = False) -> str:
    """One indexing process: its part of the catalogue into `out_dir/part-I-of-N.hidx`; returns its report."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    products = [p for p in read_catalogue(catalogue, columns, strict, labels_required=False).products
                if shard_of(p.id, shards) == shard]
    out = out_dir / part_name(shard, shards)
    built, report = write_index(bundle, products, out, variant, backend, rebuild, ann)
    return f"{out.name}: {len(built)} products; {report}"
