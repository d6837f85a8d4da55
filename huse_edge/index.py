"""A product index: every product's image, title and fused embedding from an edge bundle, searchable by cosine.

File format (`.hidx`, version 1) - an uncompressed zip, readable by any zip library and numpy-free readers:
- `index.json`: `{"format": "huse-index", "format_version": 1, "count": N, "dim": D, "modalities": [...],
  "bundle": {"path", "variant", "model_sha256", "preprocessing"}, "fusion_image_weight": w, "huse_edge_version"}`
  (`preprocessing`: the version of `transform`'s spec that prepared the photos; an update with another version
  embeds every product again);
- `products.jsonl`: line i describes row i: `{"id", "title", "category": [top, ..., leaf], "image",
  "fingerprint"}` (fingerprint: sha256 of title, category path and image bytes; it decides what to re-embed);
- per modality (`image`, `text`, `fused`): `<modality>.f32.npy` (N, D) float32 unit vectors (the model's
  embeddings re-normalised: an int8 model's outputs are unit length only to within its output grid),
  `<modality>.i8.npy` (N, D) int8 and `<modality>.scale.npy` (N,) float32: row i is `i8[i] * scale[i]`, with
  `scale[i] = max|f32[i]| / 127` (per row, so each vector uses the full int8 range);
- optionally `<modality>.hnsw.faiss`: a serialised FAISS HNSW graph over the int8 rows (see `ann`).
`.npy` files are plain little-endian arrays (numpy's v1 header, never object arrays); nothing is unpickled.
The fused embedding is `normalise(w * image + (1 - w) * text)` with the bundle's late-fusion image weight `w`.

A sharded index is a directory of such files, `part-00000-of-00004.hidx`, ..., each written by one indexing
process (`huse-edge index --shard I/N` or `--workers N`); loading the directory gives one index over all parts,
which must come from the same model.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from huse_edge import __version__
from huse_edge.ann import BRUTE_FORCE_LIMIT, HnswSearcher, ann_available
from huse_edge.atomic import atomic_path

FORMAT = "huse-index"
FORMAT_VERSION = 1
MODALITIES = ("image", "text", "fused")
METHODS = ("auto", "brute", "ann")
_CHUNK = 8192


class IndexFileError(ValueError):
    """An index file that is unreadable, tampered with, or does not belong to the bundle in use."""


@dataclass(frozen=True)
class IndexedProduct:
    id: str
    title: str
    category: tuple[str, ...]
    image: str
    fingerprint: str


def fingerprint(title: str, category: Sequence[str], image: Path) -> str:
    """What decides whether a product must be re-embedded: its title, category path and image bytes."""
    digest = hashlib.sha256(json.dumps([title, list(category)]).encode("utf-8"))
    digest.update(image.read_bytes())
    return digest.hexdigest()


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def fuse(image: np.ndarray, text: np.ndarray, image_weight: float) -> np.ndarray:
    """The fused embedding of products (or a query with both a photo and a title)."""
    return normalise(image_weight * image + (1.0 - image_weight) * text)


def quantise_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: (values, scales) with `values * scales[:, None]` close to `vectors`."""
    scales = np.maximum(np.abs(vectors).max(axis=1), 1e-12) / 127.0
    values = np.clip(np.rint(vectors / scales[:, None]), -127, 127).astype(np.int8)
    return values, scales.astype(np.float32)


@dataclass
class ProductIndex:
    products: list[IndexedProduct]
    embeddings: dict[str, np.ndarray]  # modality -> (N, D) float32
    bundle: dict  # path, variant, model_sha256
    fusion_image_weight: float
    ann: dict | None = None  # modality -> serialised FAISS graph (bytes) over exactly these rows

    def __post_init__(self):
        self._quantised = {m: quantise_rows(e) for m, e in self.embeddings.items()}
        self._rows = {p.id: i for i, p in enumerate(self.products)}
        self._searchers: dict[str, HnswSearcher] = {}

    def __len__(self) -> int:
        return len(self.products)

    @property
    def dim(self) -> int:
        return next(iter(self.embeddings.values())).shape[1]

    def rows(self, ids: Iterable[str]) -> np.ndarray:
        return np.array([self._rows[i] for i in ids], dtype=np.int64)

    def quantised(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        return self._quantised[modality]

    def vectors(self, modality: str, precision: str = "int8") -> np.ndarray:
        """The gallery as float32: the stored floats, or the int8 rows dequantised."""
        if precision == "float":
            return self.embeddings[modality]
        values, scales = self._quantised[modality]
        return values.astype(np.float32) * scales[:, None]

    def scores(self, queries: np.ndarray, modality: str, precision: str = "int8",
               rows: np.ndarray | None = None) -> np.ndarray:
        """Cosine of each query (Q, D) with every gallery row (or the given rows): (Q, R)."""
        if modality not in self.embeddings:
            raise IndexFileError(f"unknown modality {modality!r}; the index has {', '.join(self.embeddings)}")
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if queries.shape[1] != self.dim:
            raise IndexFileError(f"query embeddings have {queries.shape[1]} dimensions; the index has {self.dim}")
        if precision == "float":
            gallery = self.embeddings[modality] if rows is None else self.embeddings[modality][rows]
            return queries @ gallery.T
        values, scales = self._quantised[modality]
        if rows is not None:
            values, scales = values[rows], scales[rows]
        out = np.empty((len(queries), len(values)), np.float32)
        for start in range(0, len(values), _CHUNK):  # dequantise a chunk at a time: int8 stays int8 in memory
            chunk = values[start: start + _CHUNK].astype(np.float32)
            out[:, start: start + _CHUNK] = (queries @ chunk.T) * scales[start: start + _CHUNK]
        return out

    def searcher(self, modality: str) -> HnswSearcher:
        """The modality's HNSW graph: loaded with the index, or built now over the int8 rows."""
        if modality not in self._searchers:
            stored = (self.ann or {}).get(modality)
            self._searchers[modality] = (HnswSearcher.from_bytes(stored) if stored
                                         else HnswSearcher.build(self.vectors(modality)))
        return self._searchers[modality]

    def method_for(self, method: str) -> str:
        if method not in METHODS:
            raise IndexFileError(f"unknown search method {method!r}; choose one of {', '.join(METHODS)}")
        if method == "auto":
            return "ann" if len(self) > BRUTE_FORCE_LIMIT and ann_available() else "brute"
        return method

    def nearest(self, queries: np.ndarray, modality: str, k: int, precision: str = "int8",
                method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k nearest products per query, best first."""
        k = min(k, len(self))
        if self.method_for(method) == "ann":
            return self.searcher(modality).search(np.atleast_2d(queries), k)
        scores = self.scores(queries, modality, precision)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        rows = np.take_along_axis(top, order, axis=1)
        return np.take_along_axis(scores, rows, axis=1), rows

    def without(self, ids: Iterable[str]) -> "ProductIndex":
        """A copy without these products; the remaining rows keep their embeddings."""
        drop = set(ids)
        keep = np.array([i for i, p in enumerate(self.products) if p.id not in drop], dtype=np.int64)
        return ProductIndex([self.products[i] for i in keep], {m: e[keep] for m, e in self.embeddings.items()},
                            self.bundle, self.fusion_image_weight)

    def extended(self, products: Sequence[IndexedProduct], embeddings: dict[str, np.ndarray]) -> "ProductIndex":
        """A copy with these products appended (ids must be new)."""
        clash = sorted({p.id for p in products} & set(self._rows))
        if clash:
            raise IndexFileError(f"products already in the index: {', '.join(clash[:5])}")
        merged = {m: np.concatenate([self.embeddings[m], embeddings[m]]) for m in self.embeddings}
        return ProductIndex([*self.products, *products], merged, self.bundle, self.fusion_image_weight)

    def save(self, path: str | Path) -> None:
        header = {"format": FORMAT, "format_version": FORMAT_VERSION, "count": len(self), "dim": self.dim,
                  "modalities": list(self.embeddings), "bundle": self.bundle,
                  "fusion_image_weight": self.fusion_image_weight, "huse_edge_version": __version__}
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("index.json", json.dumps(header, indent=2) + "\n")
            archive.writestr("products.jsonl", "".join(
                json.dumps({**asdict(p), "category": list(p.category)}, ensure_ascii=False) + "\n"
                for p in self.products))
            for modality, vectors in self.embeddings.items():
                values, scales = self._quantised[modality]
                for suffix, array in (("f32", vectors), ("i8", values), ("scale", scales)):
                    archive.writestr(f"{modality}.{suffix}.npy", _npy(array))
                graph = self._searchers[modality].to_bytes() if modality in self._searchers else \
                    (self.ann or {}).get(modality)
                if graph:
                    archive.writestr(f"{modality}.hnsw.faiss", graph)

    @classmethod
    def load(cls, path: str | Path) -> "ProductIndex":
        """One `.hidx` file, or a directory of index parts read as one index."""
        path = Path(path)
        if path.is_dir():
            return cls.merged([cls.load(part) for part in part_files(path)], path)
        try:
            with zipfile.ZipFile(path) as archive:
                header = json.loads(archive.read("index.json"))
                if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
                    raise IndexFileError(f"{path}: not a huse-edge index of format version {FORMAT_VERSION} "
                                      f"(found {header.get('format')!r} {header.get('format_version')!r})")
                products = [_product(json.loads(line), path, n)
                            for n, line in enumerate(archive.read("products.jsonl").decode("utf-8").splitlines(), 1)]
                embeddings = {m: _read_npy(archive, f"{m}.f32.npy", np.float32) for m in header["modalities"]}
                ann = {m: archive.read(f"{m}.hnsw.faiss") for m in header["modalities"]
                       if f"{m}.hnsw.faiss" in archive.namelist()}
        except (OSError, zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise IndexFileError(f"{path}: unreadable index ({type(error).__name__}: {error})") from None
        for modality, vectors in embeddings.items():
            if vectors.shape != (len(products), header["dim"]):
                raise IndexFileError(f"{path}: {modality} embeddings are {vectors.shape}, expected "
                                  f"({len(products)}, {header['dim']})")
        return cls(products, embeddings, header["bundle"], float(header["fusion_image_weight"]), ann)

    @classmethod
    def merged(cls, parts: Sequence["ProductIndex"], source: Path) -> "ProductIndex":
        """The parts' rows in part order; HNSW graphs are per part and are rebuilt for the whole when needed."""
        first = parts[0]
        for part in parts[1:]:
            if part.bundle.get("model_sha256") != first.bundle.get("model_sha256") or part.dim != first.dim:
                raise IndexFileError(f"{source}: index parts come from different models")
        products = [p for part in parts for p in part.products]
        if len({p.id for p in products}) != len(products):
            raise IndexFileError(f"{source}: a product is in more than one index part")
        return ProductIndex(products, {m: np.concatenate([part.embeddings[m] for part in parts])
                                       for m in first.embeddings}, first.bundle, first.fusion_image_weight)


def part_name(shard: int, shards: int) -> str:
    return f"part-{shard:05d}-of-{shards:05d}.hidx"


def check_part_count(directory: Path, shards: int) -> None:
    """Refuses to write the parts of a `shards`-part index beside those of another count: search refuses the mix."""
    others = sorted({int(p.stem.rsplit("-", 1)[1]) for p in directory.glob("part-*-of-*.hidx")} - {shards})
    if others:
        raise IndexFileError(f"{directory} holds an index in {', '.join(map(str, others))} parts: index it in as many "
                             f"parts, or into another --out")


def part_files(directory: Path) -> list[Path]:
    """The parts of a sharded index, all present (a missing part would silently hide its products)."""
    parts = sorted(directory.glob("part-*-of-*.hidx"))
    if not parts:
        raise IndexFileError(f"{directory}: no index parts (part-*-of-*.hidx)")
    expected = int(parts[0].stem.rsplit("-", 1)[1])
    missing = sorted(set(part_name(i, expected) for i in range(expected)) - {p.name for p in parts})
    if missing or len(parts) != expected:
        raise IndexFileError(f"{directory}: index parts missing or mixed: {', '.join(missing) or 'other counts'}")
    return parts


def shard_of(product_id: str, shards: int) -> int:
    """Which index part holds a product: by a hash of its id, so that updates touch the same part."""
    return int.from_bytes(hashlib.sha1(product_id.encode("utf-8")).digest()[8:16], "big") % shards


def _product(record: dict, path: Path, line: int) -> IndexedProduct:
    try:
        return IndexedProduct(str(record["id"]), str(record["title"]), tuple(record["category"]),
                              str(record["image"]), str(record["fingerprint"]))
    except (KeyError, TypeError) as error:
        raise IndexFileError(f"{path}: products.jsonl line {line}: missing field {error}") from None


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _read_npy(archive: zipfile.ZipFile, name: str, dtype) -> np.ndarray:
    array = np.load(io.BytesIO(archive.read(name)), allow_pickle=False)
    if array.dtype != dtype or array.ndim != 2:
        raise IndexFileError(f"{name}: expected a 2-D {np.dtype(dtype).name} array, found {array.dtype} {array.shape}")
    return array
