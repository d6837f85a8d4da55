"""Hostile catalogue rows are reported with file, row and field, and skipped (or stop the read in strict mode)."""

import json
import os
import re

import pytest
from PIL import Image

from huse_edge.catalogue import CatalogueError, Columns, label, read_catalogue, split_of
from huse_edge.hierarchy import LabelHierarchy

from conftest import require_catalogue

HEADER = "id,title,master_category,sub_category,article_type,image\n"


@pytest.fixture()
def messy(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("ok1", "ok2", "dup"):
        Image.new("RGB", (60, 80), (200, 10, 10)).save(images / f"{name}.jpg")
    (images / "empty.jpg").write_bytes(b"")
    (images / "garbage.jpg").write_bytes(b"not a jpeg at all")
    Image.new("RGB", (60, 80)).save(images / "trunc.jpg")
    (images / "trunc.jpg").write_bytes((images / "trunc.jpg").read_bytes()[:200])
    os.symlink("/etc/hostname", images / "escape.jpg")
    rows = [
        "1,Red Shirt,Apparel,Topwear,Shirts,images/ok1.jpg",
        "2,Blue Shirt,Apparel,Topwear,Shirts,images/ok2.jpg",
        "2,Duplicate id,Apparel,Topwear,Shirts,images/dup.jpg",
        "3,   ,Apparel,Topwear,Shirts,images/ok1.jpg",
        "4,Missing photo,Apparel,Topwear,Shirts,images/none.jpg",
        "5,Zero bytes,Apparel,Topwear,Shirts,images/empty.jpg",
        "6,Not an image,Apparel,Topwear,Shirts,images/garbage.jpg",
        "7,Truncated,Apparel,Topwear,Shirts,images/trunc.jpg",
        "8,Escapes,Apparel,Topwear,Shirts,../outside.jpg",
        "9,Absolute,Apparel,Topwear,Shirts,/etc/passwd",
        "10,Symlink out,Apparel,Topwear,Shirts,images/escape.jpg",
        "11,No leaf,Apparel,Topwear,,images/ok1.jpg",
    ]
    path = tmp_path / "products.csv"
    bad_row = b"12,Bad \xff bytes,Apparel,Topwear,Shirts,images/ok1.jpg\n"
    unquoted_comma = b"13,Red, cotton shirt,Apparel,Topwear,Shirts,images/ok1.jpg\n"
    nul = b"14,Red\0 Shirt,Apparel,Topwear,Shirts,images/ok1.jpg\n"
    no_photo = b"15,No photo,Apparel,Topwear,Shirts,\n"
    unclosed_quote = b'16,"Unclosed,Apparel,Topwear,Shirts,images/ok1.jpg\n17,Swallowed,Apparel,Topwear,Shirts,x.jpg\n'
    path.write_bytes((HEADER + "\n".join(rows) + "\n").encode() + bad_row + unquoted_comma + nul + no_photo
                     + unclosed_quote)
    return path


def test_bad_rows_are_reported_and_skipped(messy):
    catalogue = read_catalogue(messy)
    assert [p.id for p in catalogue.products] == ["1", "2"]
    reasons = {issue.row: (issue.field, issue.reason) for issue in catalogue.issues}
    assert reasons[4][0] == "id" and "duplicate" in reasons[4][1]
    assert reasons[5] == ("title", "empty title")
    assert "not found" in reasons[6][1]
    assert "empty" in reasons[7][1]
    assert "not a usable image" in reasons[8][1] and "not a usable image" in reasons[9][1]
    assert "escapes" in reasons[10][1] and "absolute" in reasons[11][1] and "escapes" in reasons[12][1]
    assert reasons[13][0] == "category"
    assert reasons[14] == ("title", "not valid UTF-8")
    assert reasons[15] == ("row", "7 fields where the header has 6 (a comma in an unquoted value?)")
    assert reasons[16] == ("title", "holds a NUL character")
    assert reasons[17] == ("image", "empty image path")
    assert reasons[18] == ("row", "a quoted value runs from this row to line 19 (an unclosed quote?)")
    assert all(str(messy) in str(issue) for issue in catalogue.issues)


def test_strict_mode_stops_at_first_bad_row(messy):
    with pytest.raises(CatalogueError, match=r"products.csv:4: id: duplicate id"):
        read_catalogue(messy, strict=True)


def test_missing_columns_named(tmp_path):
    (tmp_path / "p.csv").write_text("id,name\n1,x\n")
    with pytest.raises(CatalogueError, match="missing column"):
        read_catalogue(tmp_path / "p.csv")


@pytest.mark.parametrize("name, reason", [("absent.csv", "catalogue file not found"),
                                          ("", "a folder, not a catalogue's CSV/JSONL file")])
def test_a_path_that_is_no_catalogue_file_is_named_with_what_it_is(tmp_path, name, reason):
    with pytest.raises(CatalogueError, match=re.escape(f"{tmp_path / name}: {reason}")):
        read_catalogue(tmp_path / name)


def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    rows = HEADER + "1,Red Shirt,Apparel,Topwear,Shirts,a.jpg\n"
    (tmp_path / "p.csv").write_bytes(("\ufeff" + rows).encode())  # as Excel's "CSV UTF-8" writes it
    assert [p.id for p in read_catalogue(tmp_path / "p.csv").products] == ["1"]


def test_jsonl_and_single_category_column(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    (tmp_path / "p.jsonl").write_text('{"id": "a", "title": "T", "image": "a.jpg", "cat": "X > Y > Z"}\n{oops\n')
    catalogue = read_catalogue(tmp_path / "p.jsonl", Columns(category=("cat",)))
    assert catalogue.products[0].path == ("X", "Y", "Z")
    assert catalogue.issues[0].row == 2 and "invalid JSON" in catalogue.issues[0].reason


def test_json_values_that_are_not_text_are_reported(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    rows = [{"id": 5, "title": "Red Shirt"}, {"id": "6", "title": ["Red", "Shirt"]}, {"id": "7", "image": {"a": 1}},
            {"id": "8", "title": None}]
    lines = [json.dumps({"title": "T", "image": "a.jpg", "cat": "X > Y > Z", **row}) for row in rows]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    catalogue = read_catalogue(tmp_path / "p.jsonl", Columns(category=("cat",)))
    assert [p.id for p in catalogue.products] == ["5"]
    assert [(i.row, i.field, i.reason) for i in catalogue.issues] == [
        (2, "title", "a JSON array where text is expected"), (3, "image", "a JSON object where text is expected"),
        (4, "title", "empty title")]


def test_an_unclosed_quote_stops_the_read_at_its_row(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    rows = ["1,Red Shirt,Apparel,Topwear,Shirts,a.jpg", '2,"Blue Shirt,Apparel,Topwear,Shirts,a.jpg']
    rows += [f"{i},Shirt {i} {'x' * 1000},Apparel,Topwear,Shirts,a.jpg" for i in range(3, 300)]
    (tmp_path / "p.csv").write_text(HEADER + "\n".join(rows) + "\n")
    with pytest.raises(CatalogueError, match=r"p\.csv:3: unreadable CSV from this row on \(field larger than field "
                                             r"limit \(131072\)\); an unclosed quote"):
        read_catalogue(tmp_path / "p.csv")


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    (tmp_path / "p.csv").write_text("id,title,title,image,master_category,sub_category,article_type\n")
    with pytest.raises(CatalogueError, match="p.csv: the header names title more than once"):
        read_catalogue(tmp_path / "p.csv")


def test_split_is_deterministic_and_balanced():
    splits = [split_of(str(i)) for i in range(20000)]
    assert splits == [split_of(str(i)) for i in range(20000)]
    assert abs(splits.count("train") / 20000 - 0.8) < 0.01 and abs(splits.count("test") / 20000 - 0.1) < 0.01


def test_a_split_without_products_is_refused_naming_the_catalogue(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    ids = [i for i in map(str, range(200)) if split_of(i) != "test"][:30]
    (tmp_path / "p.csv").write_text(HEADER + "".join(f"{i},Red Shirt,Apparel,Topwear,Shirts,a.jpg\n" for i in ids))
    with pytest.raises(CatalogueError, match=r"p\.csv: the test split \(80/10/10 of the ids by sha1\) holds no "
                                             r"product \(30 in all\)"):
        read_catalogue(tmp_path / "p.csv").split("test")
    labelled = label(read_catalogue(tmp_path / "p.csv"))
    assert len(labelled.split("train").products) + len(labelled.split("val").products) == 30
    with pytest.raises(CatalogueError, match=r"p\.csv: the test split .* holds no product of the 1 classes kept"):
        labelled.split("test")
    unknown = label(read_catalogue(tmp_path / "p.csv"), hierarchy=LabelHierarchy.from_paths([("A", "B", "C")]))
    with pytest.raises(CatalogueError, match=r"p\.csv: the catalogue holds no product of the 1 classes kept"):
        unknown.split("all")


def test_real_catalogue_inconsistent_paths_kept_and_reported():
    catalogue = read_catalogue(require_catalogue())
    assert len(catalogue.products) == 37541
    kept = [i for i in catalogue.issues if not i.skipped]
    assert kept and all("usually under" in i.reason for i in kept)
    tshirts = {p.path for p in catalogue.products if p.path[-1] == "Tshirts"}
    assert tshirts == {("Apparel", "Topwear", "Tshirts")}
    labelled = label(catalogue, min_class_size=20)
    assert len(labelled.hierarchy) == 85 and sum(labelled.dropped_classes.values()) == 378
