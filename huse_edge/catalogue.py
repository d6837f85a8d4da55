"""Reading a product catalogue (CSV or JSONL) into validated products, with a per-row report of what was wrong.

A row is skipped, never silently, when its id is missing or duplicated, its title is empty, its category path
is incomplete, or its image is missing, empty, not an image, or outside the catalogue folder. A leaf category
found under a different parent than usual is kept under its most common parent and reported. With
`strict=True` the first problem stops the read instead.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, TextIO

from huse_edge.hierarchy import SEPARATOR, LabelHierarchy
from huse_edge.transform import ImageError, load_rgb

SPLITS = ("train", "val", "test")


class CatalogueError(ValueError):
    """The catalogue cannot be used (unreadable file, missing columns, a bad row in strict mode, ...)."""


@dataclass(frozen=True)
class Columns:
    """Which fields hold what. `category` lists the path from the top level to the leaf; a single column holding
    a path like "Apparel > Topwear > Tshirts" is split on `category_separator`."""

    id: str = "id"
    title: str = "title"
    image: str = "image"
    category: tuple[str, ...] = ("master_category", "sub_category", "article_type")
    category_separator: str = ">"

    def to_dict(self) -> dict:
        """JSON-ready, as a model directory's `config.json` and a verify reference record them."""
        return {**asdict(self), "category": list(self.category)}

    @classmethod
    def from_dict(cls, saved: dict) -> "Columns":
        return cls(**{**saved, "category": tuple(saved["category"])})


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    image: Path
    path: tuple[str, ...]
    row: int

    @property
    def split(self) -> str:
        return split_of(self.id)


@dataclass(frozen=True)
class RowIssue:
    source: str
    row: int
    field: str
    reason: str
    skipped: bool = True

    def __str__(self) -> str:
        action = "skipped" if self.skipped else "kept"
        return f"{self.source}:{self.row}: {self.field}: {self.reason} ({action})"


@dataclass
class Catalogue:
    source: Path
    products: list[Product]
    issues: list[RowIssue] = field(default_factory=list)

    def split(self, name: str) -> list[Product]:
        """The products of one split (`split_of`), or every product for "all"; refused when it has none."""
        return [self.products[i] for i in _split_rows(self.products, name, self.source, "")]

    def report_lines(self, limit: int = 20) -> list[str]:
        """The first `limit` row reports, indented, and how many more there are."""
        lines = [f"  {issue}" for issue in self.issues[:limit]]
        if len(self.issues) > limit:
            lines.append(f"  ... {len(self.issues) - limit} more row reports")
        return lines

    def summary(self) -> str:
        skipped = sum(i.skipped for i in self.issues)
        return (f"{self.source}: {len(self.products)} products read, {skipped} rows skipped, "
                f"{len(self.issues) - skipped} rows kept with a warning")


def split_of(product_id: str) -> str:
    """Deterministic split by id: sha1(id) mapped to [0, 1); < 0.8 train, < 0.9 val, else test.

    Adding or removing other products never moves a product to another split."""
    bucket = int.from_bytes(hashlib.sha1(product_id.encode("utf-8")).digest()[:8], "big") / 2**64
    return "train" if bucket < 0.8 else "val" if bucket < 0.9 else "test"


def in_split(product_id: str, name: str) -> bool:
    """Whether the product belongs to split `name`: one of `SPLITS`, or "all" for every product."""
    return name == "all" or split_of(product_id) == name


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(row number as a user sees it, record) for CSV (header = line 1) or JSONL (line numbers); a row that cannot
    be read is a record holding only `__error__`, the reason, and a CSV whose rest cannot be read is refused."""
    # utf-8-sig: spreadsheet programs start a UTF-8 CSV with a byte order mark, which would become part of the
    # first column's name
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as stream:
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            yield from _jsonl_rows(stream)
        else:
            yield from _csv_rows(stream, path)


def _jsonl_rows(stream: TextIO) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, {"__error__": f"invalid JSON ({error.msg})"}
            continue
        yield number, record if isinstance(record, dict) else {"__error__": "not a JSON object"}


def _csv_rows(stream: TextIO, path: Path) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(stream)
    names = reader.fieldnames or []
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # the reader would keep the last of them, silently
        raise CatalogueError(f"{path}: the header names {', '.join(twice)} more than once")
    last = reader.line_num  # the line each record ends on: a quoted value may span lines
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # the reader would go on after the lines it swallowed, which nobody would know
            raise CatalogueError(f"{path}:{last + 1}: unreadable CSV from this row on ({error}); an unclosed quote "
                                 "makes every later line part of one field") from None
        first, last = last + 1, reader.line_num
        if None in record:  # fields beyond the header's: most often a comma in an unquoted title
            yield first, {"__error__": f"{len(names) + len(record[None])} fields where the header has {len(names)} "
                                       "(a comma in an unquoted value?)"}
        elif last > first and None in record.values():  # short of fields, over several lines
            yield first, {"__error__": f"a quoted value runs from this row to line {last} (an unclosed quote?)"}
        else:
            yield first, record


def _text(record: dict, column: str) -> str:
    value = record.get(column)
    return "" if value is None else str(value).strip()


def _resolve_image(root: Path, value: str) -> tuple[Path | None, str]:
    if not value:
        return None, "empty image path"
    candidate = Path(value)
    if candidate.is_absolute():
        return None, "absolute image paths are not allowed"
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root):
        return None, f"image path escapes the catalogue folder ({value})"
    if not resolved.is_file():
        return None, f"image file not found ({value})"
    if resolved.stat().st_size == 0:
        return None, f"image file is empty ({value})"
    try:  # a full decode (about 0.1 ms for a product photo) so that later stages never meet a broken image
        load_rgb(resolved)
    except ImageError as error:
        return None, f"not a usable image ({str(error).split(': ', 1)[-1]})"
    return resolved, ""


def read_catalogue(path: str | Path, columns: Columns = Columns(), strict: bool = False,
                   labels_required: bool = True) -> Catalogue:
    """Reads and validates a catalogue; image paths are relative to the catalogue file's folder. Without
    `labels_required` (products to classify), the category columns may be absent or empty: such a product gets the
    empty path, and a partly filled path is reported and kept empty."""
    source = Path(path)
    if not source.is_file():
        raise CatalogueError(f"{source}: " + ("a folder, not a catalogue's CSV/JSONL file" if source.is_dir()
                                              else "catalogue file not found"))
    root = source.parent.resolve()
    products: list[Product] = []
    issues: list[RowIssue] = []
    seen: set[str] = set()

    def report(row: int, field_name: str, reason: str, skipped: bool = True) -> None:
        issue = RowIssue(str(source), row, field_name, reason, skipped)
        if strict:
            raise CatalogueError(str(issue).replace(" (skipped)", "").replace(" (kept)", ""))
        issues.append(issue)

    product_columns = [columns.id, columns.title, columns.image]
    needed = [*product_columns, *columns.category]
    header_checked = False
    labelled = True
    for row, record in _rows(source):
        if "__error__" in record:
            report(row, "row", record["__error__"])
            continue
        if not header_checked:
            missing = [c for c in needed if c not in record]
            if not labels_required and missing and set(missing) <= set(columns.category):
                labelled, needed, missing = False, product_columns, []
            if missing:
                raise CatalogueError(f"{source}: missing column(s) {', '.join(missing)}; found {', '.join(record)}")
            header_checked = True
        nested = [c for c in needed if isinstance(record.get(c), (list, dict))]
        if nested:
            report(row, nested[0], f"a JSON {'array' if isinstance(record[nested[0]], list) else 'object'} where "
                                   "text is expected")
            continue
        values = {c: _text(record, c) for c in needed}
        bad_bytes = [c for c, v in values.items() if any("\udc80" <= ch <= "\udcff" for ch in v)]
        if bad_bytes:
            report(row, bad_bytes[0], "not valid UTF-8")
            continue
        nul = [c for c, v in values.items() if "\0" in v]
        if nul:
            report(row, nul[0], "holds a NUL character")
            continue
        product_id, title = values[columns.id], values[columns.title]
        if not product_id:
            report(row, columns.id, "empty id")
            continue
        if product_id in seen:
            report(row, columns.id, f"duplicate id {product_id!r}")
            continue
        if not title:
            report(row, columns.title, "empty title")
            continue
        if not labelled:
            category = ()
        elif len(columns.category) == 1:
            category = tuple(p.strip() for p in values[columns.category[0]].split(columns.category_separator))
        else:
            category = tuple(values[c] for c in columns.category)
        if not all(category):
            if labels_required or any(category):
                report(row, "category", f"incomplete category path {SEPARATOR.join(category)!r}"
                       + ("" if labels_required else "; classified as unlabelled"), skipped=labels_required)
            if labels_required:
                continue
            category = ()
        image, reason = _resolve_image(root, values[columns.image])
        if image is None:
            report(row, columns.image, reason)
            continue
        seen.add(product_id)
        products.append(Product(product_id, title, image, category, row))
    if not products:
        raise CatalogueError(f"{source}: no usable products" + (f" ({len(issues)} rows rejected)" if issues else ""))
    products = _canonical_paths(products, report)
    return Catalogue(source, products, issues)


def _canonical_paths(products: list[Product], report) -> list[Product]:
    """Puts every leaf under its most common parent path; reports rows that disagreed."""
    parents: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for p in products:
        if p.path:
            parents[p.path[-1]][p.path[:-1]] += 1
    canonical = {leaf: counts.most_common(1)[0][0] for leaf, counts in parents.items()}
    fixed = []
    for p in products:
        parent = canonical[p.path[-1]] if p.path else ()
        if p.path[:-1] != parent:
            report(p.row, "category", f"{p.path[-1]!r} under {SEPARATOR.join(p.path[:-1])!r}, "
                                      f"usually under {SEPARATOR.join(parent)!r}; using the usual path",
                   skipped=False)
            p = Product(p.id, p.title, p.image, parent + (p.path[-1],), p.row)
        fixed.append(p)
    return fixed


@dataclass(frozen=True)
class LabelledCatalogue:
    """Products restricted to the classes that will be learnt, with their class ids."""

    source: Path
    products: list[Product]
    labels: list[int]
    hierarchy: LabelHierarchy
    dropped_classes: dict[str, int]

    def split(self, name: str) -> "LabelledCatalogue":
        """The products of one split (`split_of`), or every product for "all"; refused when it has none, as nothing
        could be trained, chosen or measured on it."""
        keep = _split_rows(self.products, name, self.source, f" of the {len(self.hierarchy)} classes kept")
        return LabelledCatalogue(self.source, [self.products[i] for i in keep], [self.labels[i] for i in keep],
                                 self.hierarchy, self.dropped_classes)


def _split_rows(products: list[Product], name: str, source: Path, kept: str) -> list[int]:
    """Positions of the products of split `name` (all for "all"); `kept` says in the refusal which products count."""
    rows = [i for i, p in enumerate(products) if in_split(p.id, name)]
    if not rows:
        part = "the catalogue" if name == "all" else f"the {name} split (80/10/10 of the ids by sha1)"
        raise CatalogueError(f"{source}: {part} holds no product{kept} ({len(products)} in all)")
    return rows


def class_path(product: Product, class_level: int) -> tuple[str, ...]:
    """The path truncated at the class level (0 = top, -1 = leaf)."""
    depth = len(product.path)
    if not -depth <= class_level < depth:
        raise CatalogueError(f"product {product.id}: class level {class_level} is outside its category path of "
                             f"{depth} levels (0 to {depth - 1} from the top, -1 to -{depth} from the leaf)")
    level = class_level % depth
    return product.path[: level + 1]


def label(catalogue: Catalogue, class_level: int = -1, min_class_size: int = 20,
          hierarchy: LabelHierarchy | None = None) -> LabelledCatalogue:
    """Assigns class ids. With `hierarchy` given (evaluating a trained model), products of unknown classes are
    dropped; otherwise classes with fewer than `min_class_size` products are dropped and counted."""
    paths = [class_path(p, class_level) for p in catalogue.products]
    counts = collections.Counter(paths)
    if hierarchy is None:
        kept = {c for c, n in counts.items() if n >= min_class_size}
        if not kept:
            raise CatalogueError(f"{catalogue.source}: no class has {min_class_size} or more products")
        hierarchy = LabelHierarchy.from_paths(kept)
    index = hierarchy.index()
    dropped = {SEPARATOR.join(c): n for c, n in sorted(counts.items()) if c not in index}
    keep = [i for i, c in enumerate(paths) if c in index]
    return LabelledCatalogue(catalogue.source, [catalogue.products[i] for i in keep],
                             [index[paths[i]] for i in keep], hierarchy, dropped)
