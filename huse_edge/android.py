"""What the Android app gets from the Python side: its assets (a one-variant bundle plus a product index) and the
golden vectors that keep the Kotlin core and the Python runtime from drifting apart.

Golden directory (`huse-edge android golden`), all arrays `.npy`, row i = product i of `products.jsonl`:
- `products.jsonl`: id, title, category path of each product checked;
- `tokens.npy` (N, L) int32: the Python tokenizer's ids; `tokenizer_cases.jsonl`: hard titles (Unicode, NFKC,
  punctuation, over-long) with their ids;
- `raw_pixels.npy` (flat uint8) + `raw_shapes.npy` (N, 2) int32: each photo decoded by the Python side (step 1
  of `transform`), so the Kotlin resize is compared on identical input; `inputs.npy` (N, H, W, 3) uint8: the model
  input the Python side made from them;
- `resize_raw.npy` (flat uint8) + `resize_shapes.npy` (M, 2) int32: seeded random photos from twice to twenty times
  the input size, sizes that leave narrower last blocks in step 2 of `transform` (catalogue photos are often too
  small to reach it), and `resize_inputs.npy` (M, H, W, 3) uint8: their model inputs;
- `image_embeddings.npy`, `text_embeddings.npy`, `fused_embeddings.npy` (N, D) float32 and
  `fused_probabilities.npy` (N, K) float32: the Python runtime's outputs (LiteRT, the bundle's variant);
- with an index: `search_queries.npy` (Q, D) and `search_expected.json` (per query the top-10 rows and scores of
  the Python int8 brute-force search over the image embeddings).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from huse_edge.atomic import atomic_path
from huse_edge.bundle import MANIFEST, Bundle, sha256_of
from huse_edge.catalogue import Product
from huse_edge.index import ProductIndex, fuse
from huse_edge.runtime import HuseRuntime
from huse_edge.search import index_for
from huse_edge.transform import load_rgb, preprocess

TOKENIZER_CASES = ("Nike Men's Air-Max 90 \u00abRunning\u00bb Shoes",
                   "\uff37\uff2f\uff2d\uff25\uff2e \uff34\uff4f\uff50",
                   "caf\u00e9 cr\u00e8me \u00dcBER stra\u00dfe", "\u2460\u2461 \ufb01ne \u2163 tee", "",
                   "   ", "a" * 40 + " b", "one two three four five six seven eight nine ten eleven twelve "
                   "thirteen fourteen fifteen sixteen seventeen", "Tshirt\tJeans\nBelt", "\U0001F600 smile 42")
SEARCH_QUERIES = 50
# (rows, columns) of the resize cases, in multiples of the input's height and width plus pixels
RESIZE_CASES = (((2, 0), (2, 0)), ((8, -5), (7, 3)), ((2, 1), (20, -1)), ((1, 64), (10, 0)))
GOLDEN_MARKER = "tokenizer_cases.jsonl"  # the file only a golden directory holds


def write_golden(runtime: HuseRuntime, products: Sequence[Product], out: str | Path,
                 index: ProductIndex | None = None, batch: int = 64) -> int:
    """Writes the golden directory for `products` (see the module docstring); returns how many products."""
    bundle = runtime.bundle
    with atomic_path(out, GOLDEN_MARKER) as tmp:
        tmp.mkdir(parents=True)
        with (tmp / "products.jsonl").open("w", encoding="utf-8") as stream:
            for p in products:
                stream.write(json.dumps({"id": p.id, "title": p.title, "category": list(p.path)},
                                        ensure_ascii=False) + "\n")
        with (tmp / "tokenizer_cases.jsonl").open("w", encoding="utf-8") as stream:
            for text in TOKENIZER_CASES:
                stream.write(json.dumps({"text": text, "ids": bundle.tokenizer.encode(text).tolist()}) + "\n")
        tokens = bundle.tokenizer.encode_batch(p.title for p in products)
        raw = [load_rgb(p.image) for p in products]
        inputs = np.stack([preprocess(r, bundle.image_height, bundle.image_width) for r in raw])
        parts: dict[str, list] = {"image_embeddings": [], "text_embeddings": [], "fused_probabilities": []}
        for start in range(0, len(products), batch):
            pixels, ids = inputs[start: start + batch], tokens[start: start + batch]
            parts["image_embeddings"].append(runtime.embed_image(pixels))
            parts["text_embeddings"].append(runtime.embed_text(ids))
            parts["fused_probabilities"].append(runtime.classify_product(pixels, ids))
        arrays = {name: np.concatenate(values).astype(np.float32) for name, values in parts.items()}
        arrays["fused_embeddings"] = fuse(arrays["image_embeddings"], arrays["text_embeddings"],
                                          bundle.fusion_image_weight)
        arrays.update(tokens=tokens.astype(np.int32), inputs=inputs,
                      raw_pixels=np.concatenate([r.ravel() for r in raw]),
                      raw_shapes=np.array([r.shape[:2] for r in raw], dtype=np.int32))
        arrays.update(_resize_cases(bundle.image_height, bundle.image_width))
        if index is not None:
            queries = arrays["text_embeddings"][:SEARCH_QUERIES]
            scores, rows = index.nearest(queries, "image", 10, "int8", "brute")
            arrays["search_queries"] = queries
            (tmp / "search_expected.json").write_text(json.dumps(
                {"modality": "image", "rows": rows.tolist(), "scores": scores.tolist()}))
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    return len(products)


def _resize_cases(height: int, width: int) -> dict[str, np.ndarray]:
    """`RESIZE_CASES` as seeded random photos and the model inputs `preprocess` makes of them."""
    rng = np.random.default_rng(0)
    shapes = [(rows * height + extra_rows, columns * width + extra_columns)
              for (rows, extra_rows), (columns, extra_columns) in RESIZE_CASES]
    raw = [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]
    return {"resize_raw": np.concatenate([r.ravel() for r in raw]),
            "resize_shapes": np.array(shapes, dtype=np.int32),
            "resize_inputs": np.stack([preprocess(r, height, width) for r in raw])}


def write_assets(bundle: Bundle, variant: str, index_path: Path | None, out: str | Path) -> list[str]:
    """A one-variant bundle (its own manifest, re-hashed, the index among its files), ready for the app's assets
    folder; the Kotlin core verifies it like any bundle. The index (one file or a directory of parts) must have been
    embedded by this variant's model, and is written as one file without HNSW graphs: the app searches the int8
    rows by brute force."""
    model = bundle.model_file(variant)
    index = index_for(index_path, bundle, variant)
    names = ["labels.txt", "vocab.txt", "tokenizer.json", "preprocessing.json"]
    with atomic_path(out, MANIFEST) as tmp:
        tmp.mkdir(parents=True)
        shutil.copyfile(model, tmp / model.name)
        for name in names:
            shutil.copyfile(bundle.path / name, tmp / name)
        if index is not None:
            ProductIndex(index.products, index.embeddings, index.bundle, index.fusion_image_weight).save(
                tmp / "products.hidx")
        files = sorted(p.name for p in tmp.iterdir())
        entry = {**bundle.manifest["variants"][variant], "model": model.name, "signatures": {}}
        manifest = {**bundle.manifest, "variants": {variant: entry},
                    "files": {name: sha256_of(tmp / name) for name in files}}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return sorted(p.name for p in Path(out).iterdir())
