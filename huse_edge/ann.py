"""Approximate nearest neighbours for catalogues too large for brute force, on FAISS HNSW graphs.

Why FAISS: it is maintained (Meta), ships CPU wheels for Linux, macOS and Windows that work with the numpy this
project pins, its indexes serialise to plain bytes (no pickle), and HNSW over inner product needs no training
step, so an index can grow incrementally. ScaNN is tied to TensorFlow releases and Linux; hnswlib has had no
release since 2023. FAISS is an optional dependency (`pip install huse-edge[ann]`): brute force needs only numpy.

The graph is built over the index's int8 rows (dequantised), so ANN and brute force rank the same vectors and
recall against brute force measures only the approximation.
"""

from __future__ import annotations

import numpy as np

BRUTE_FORCE_LIMIT = 100_000  # rows; above it `auto` search uses the graph
M = 32  # graph degree: FAISS's recommended range for 256-d embeddings is 16-64
EF_CONSTRUCTION = 80
EF_SEARCH = 64


class AnnUnavailable(RuntimeError):
    """FAISS is not installed."""


def ann_available() -> bool:
    try:
        _faiss()
    except AnnUnavailable:
        return False
    return True


def require_ann() -> None:
    """Raises AnnUnavailable, with the install line, where FAISS is missing: before work that ends in a graph."""
    _faiss()


def _faiss():
    try:
        import faiss
    except ImportError:
        raise AnnUnavailable("approximate search needs FAISS: pip install 'huse-edge[ann]'") from None
    return faiss


class HnswSearcher:
    """Inner-product HNSW search over unit (or near-unit) vectors."""

    def __init__(self, index):
        self._index = index

    @classmethod
    def build(cls, vectors: np.ndarray) -> "HnswSearcher":
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(vectors.shape[1], M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        index.add(np.ascontiguousarray(vectors, np.float32))
        return cls(index)

    @classmethod
    def from_bytes(cls, data: bytes) -> "HnswSearcher":
        faiss = _faiss()
        return cls(faiss.deserialize_index(np.frombuffer(data, np.uint8)))

    def to_bytes(self) -> bytes:
        return _faiss().serialize_index(self._index).tobytes()

    def __len__(self) -> int:
        return self._index.ntotal

    def search(self, queries: np.ndarray, k: int, ef: int = EF_SEARCH) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k best rows per query, best first."""
        self._index.hnsw.efSearch = max(ef, k)
        scores, rows = self._index.search(np.ascontiguousarray(np.atleast_2d(queries), np.float32), k)
        return scores, rows


def recall_at_k(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Fraction of the exact top-k rows that the approximate search also returned."""
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approximate, exact)]))
