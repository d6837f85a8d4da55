"""Search latency and HNSW quality on a real index: p50/p90 per query for int8 brute force and FAISS HNSW, HNSW
recall@10 against brute force, and the speed-up.

    python benchmarks/search.py INDEX [--size 30000] [--queries 500] [--modality image]

`--size N` keeps the first N products of the index (e.g. 30k of the 37k-product shared catalogue). Queries are
the text embeddings of indexed products (a text->image search, the app's main use).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from huse_edge.index import ProductIndex
from huse_edge.search import benchmark_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", type=Path)
    parser.add_argument("--size", type=int, help="keep the first N products")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--modality", default="image", choices=["image", "text", "fused"])
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    index = ProductIndex.load(args.index)
    if args.size and args.size < len(index):
        index = index.without(p.id for p in index.products[args.size:])
    figures = benchmark_search(index, args.modality, args.queries, args.k)
    print(json.dumps(figures, indent=2))
    print(f"{figures['index_size']} products: brute force (int8) p50 {figures['brute_p50_ms']:.2f} ms, "
          f"HNSW p50 {figures['ann_p50_ms']:.3f} ms ({figures['ann_speedup']:.1f}x faster), "
          f"HNSW recall@{args.k} vs brute force {figures[f'ann_recall@{args.k}']:.4f}")


if __name__ == "__main__":
    main()
