"""Converts the public Fashion Product Images (small) collection, as published (`styles.csv` + `images/`), into a
huse-edge catalogue (`products.csv` in the default column layout, photos alongside).

Source columns: id, gender, masterCategory, subCategory, articleType, baseColour, season, year, usage,
productDisplayName. Some published rows carry unquoted commas in the product name; the extra fields are joined
back into the name. Rows whose photo is missing are reported and left out.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from huse_edge.atomic import atomic_path
from huse_edge.catalogue import CatalogueError

SOURCE_COLUMNS = ("id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year",
                  "usage", "productDisplayName")
OUTPUT_COLUMNS = ("id", "title", "master_category", "sub_category", "article_type", "base_colour", "usage", "image")


def published_folder(source: Path) -> Path:
    """The folder that holds `styles.csv` and `images/`: SOURCE itself, or the one folder below it that does (the
    published archive also unpacks into a `myntradataset/` folder)."""
    if (source / "styles.csv").is_file():
        return source
    found = sorted(styles.parent for styles in source.glob("*/styles.csv") if (styles.parent / "images").is_dir())
    if len(found) == 1:
        return found[0]
    where = f"several: {', '.join(str(f) for f in found)}" if found else "none"
    raise CatalogueError(f"{source}: expected the published styles.csv and images/ folder in it or one folder "
                         f"below it; found {where}")


def import_fashion(source: str | Path, out: str | Path) -> tuple[int, list[str]]:
    """Writes OUT/products.csv and OUT/images/; returns (products written, row reports)."""
    source, out = published_folder(Path(source)), Path(out)
    styles = source / "styles.csv"
    reports: list[str] = []
    rows: list[dict] = []
    with styles.open(encoding="utf-8", errors="replace", newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader, [])
        if tuple(header[: len(SOURCE_COLUMNS)]) != SOURCE_COLUMNS:
            raise CatalogueError(f"{styles}: unexpected header {header}")
        for number, fields in enumerate(reader, start=2):
            if len(fields) < len(SOURCE_COLUMNS):
                reports.append(f"{styles}:{number}: too few fields ({len(fields)})")
                continue
            record = dict(zip(SOURCE_COLUMNS, fields[: len(SOURCE_COLUMNS) - 1]))
            record["productDisplayName"] = ",".join(fields[len(SOURCE_COLUMNS) - 1:]).strip()
            if not record["id"].isdigit():  # it names the photo: a path in it would read and write elsewhere
                reports.append(f"{styles}:{number}: id {record['id']!r} is not a number, as the published ids are")
                continue
            photo = source / "images" / f"{record['id']}.jpg"
            if not photo.is_file():
                reports.append(f"{styles}:{number}: image images/{record['id']}.jpg not found")
                continue
            rows.append({"id": record["id"], "title": record["productDisplayName"],
                         "master_category": record["masterCategory"], "sub_category": record["subCategory"],
                         "article_type": record["articleType"], "base_colour": record["baseColour"],
                         "usage": record["usage"], "image": f"images/{record['id']}.jpg"})
    (out / "images").mkdir(parents=True, exist_ok=True)
    for row in rows:
        shutil.copyfile(source / row["image"], out / row["image"])
    with atomic_path(out / "products.csv") as tmp:
        with tmp.open("w", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=OUTPUT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return len(rows), reports
