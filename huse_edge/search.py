"""`huse-edge search`: cross-modal product search over a `ProductIndex`, and its retrieval evaluation.

Queries are embedded by the same bundle (model file checked by sha256) that built the index: a title goes through
the text tower, a photo through the image tower, both together give a fused query.

`evaluate_index` measures, on one split of the indexed products that have a category (queries and gallery both
from those):
- instance-level Recall@K: the query product's own photo (text->image) or own title (image->text) is among the
  K nearest;
- class-level Recall@1 (the HUSE paper's metric): the nearest product has the query's leaf category;
for the float and the int8 gallery. `benchmark_search` measures the approximate (HNSW) search: its latency and its
recall@k against brute force.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from huse_edge.ann import recall_at_k
from huse_edge.bundle import Bundle, sha256_of
from huse_edge.catalogue import in_split
from huse_edge.evaluate import RECALL_KS, class_recall_at_k
from huse_edge.index import IndexFileError, ProductIndex, fuse, normalise
from huse_edge.runtime import HuseRuntime

DIRECTIONS = {"text_to_image": ("text", "image"), "image_to_text": ("image", "text")}


def embed_query(runtime: HuseRuntime, text: str | None = None, image: str | Path | None = None) -> np.ndarray:
    """One query embedding: text, image, or both fused with the bundle's fusion weight."""
    if text is None and image is None:
        raise ValueError("give a text query, an image query, or both")
    text_vector = runtime.embed_text([text])[0] if text is not None else None
    image_vector = runtime.embed_image([image])[0] if image is not None else None
    if text_vector is not None and image_vector is not None:
        return fuse(image_vector, text_vector, runtime.bundle.fusion_image_weight)
    return normalise(text_vector if text_vector is not None else image_vector)


def check_model(index: ProductIndex, bundle: Bundle, variant: str) -> None:
    """Refuses an index that another model file embedded: its rows are not comparable with this model's queries."""
    if index.bundle.get("model_sha256") != sha256_of(bundle.model_file(variant)):
        raise IndexFileError(f"the index was built with another model ({index.bundle.get('path')}, "
                             f"{index.bundle.get('variant')}): its embeddings are not comparable with "
                             f"{bundle.path} ({variant})")


def index_for(path: Path | None, bundle: Bundle, variant: str) -> ProductIndex | None:
    """The index at `path` (a file or a directory of parts), refused unless this variant's model embedded it."""
    if path is None:
        return None
    index = ProductIndex.load(path)
    check_model(index, bundle, variant)
    return index


def hits(index: ProductIndex, scores: np.ndarray, rows: np.ndarray) -> list[dict]:
    return [{"rank": rank, "id": index.products[row].id, "title": index.products[row].title,
             "category": list(index.products[row].category), "score": round(float(score), 4)}
            for rank, (score, row) in enumerate(zip(scores, rows), 1) if row >= 0]


def evaluate_index(index: ProductIndex, split: str = "test") -> dict:
    """Retrieval metrics on one split of the index (see the module docstring)."""
    rows = np.array([i for i, p in enumerate(index.products) if in_split(p.id, split) and p.category])
    if len(rows) < 2:
        raise IndexFileError(f"the index holds {len(rows)} products with a category in the {split} split; nothing "
                             "to evaluate")
    leaves = [index.products[i].category[-1] for i in rows]
    classes = np.unique(leaves, return_inverse=True)[1]
    own = np.arange(len(rows))
    metrics: dict = {"split": split, "products": int(len(rows)), "index_size": len(index)}
    for precision in ("float", "int8"):
        for direction, (query, gallery) in DIRECTIONS.items():
            queries = index.embeddings[query][rows]
            targets = index.vectors(gallery, precision)[rows]
            for k, value in class_recall_at_k(queries, targets, own, own).items():
                metrics[f"{precision}_{direction}_instance_R@{k}"] = value
            metrics[f"{precision}_{direction}_class_R@1"] = class_recall_at_k(queries, targets, classes, classes,
                                                                              ks=(1,))[1]
    return metrics


def benchmark_search(index: ProductIndex, modality: str = "image", queries: int = 200, k: int = 10) -> dict:
    """Per-query latency (p50, ms) of int8 brute force and HNSW over the whole index, and HNSW recall@k against
    int8 brute force; text embeddings of indexed products are the queries."""
    rng = np.random.default_rng(0)
    sample = index.embeddings["text"][rng.choice(len(index), min(queries, len(index)), replace=False)]
    build_start = time.perf_counter()
    index.searcher(modality)
    build_seconds = time.perf_counter() - build_start
    results: dict = {"index_size": len(index), "queries": len(sample), "k": k, "hnsw_build_seconds": build_seconds}
    found = {}
    for method in ("brute", "ann"):
        times, rows = [], []
        for query in sample:
            start = time.perf_counter()
            rows.append(index.nearest(query, modality, k, method=method)[1][0])
            times.append(time.perf_counter() - start)
        found[method] = np.array(rows)
        results[f"{method}_p50_ms"] = 1000 * float(np.median(times))
        results[f"{method}_p90_ms"] = 1000 * float(np.percentile(times, 90))
    results[f"ann_recall@{k}"] = recall_at_k(found["ann"], found["brute"])
    results["ann_speedup"] = results["brute_p50_ms"] / results["ann_p50_ms"]
    return results


def format_evaluation(metrics: dict) -> str:
    lines = [f"retrieval on the {metrics['split']} split: {metrics['products']} products "
             f"(index of {metrics['index_size']})",
             f"{'':<28}" + "".join(f"{'R@' + str(k):>8}" for k in RECALL_KS) + f"{'class R@1':>11}"]
    for precision in ("float", "int8"):
        for direction in DIRECTIONS:
            key = f"{precision}_{direction}"
            lines.append(f"{key:<28}" + "".join(f"{metrics[f'{key}_instance_R@{k}']:>8.4f}" for k in RECALL_KS)
                         + f"{metrics[f'{key}_class_R@1']:>11.4f}")
    return "\n".join(lines)
