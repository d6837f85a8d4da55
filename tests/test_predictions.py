"""`huse-edge classify --catalogue`: a whole catalogue classified on the edge bundle, with or without categories."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner
from conftest import cli_without, read_rows, write_catalogue

from huse_edge.catalogue import split_of
from huse_edge.cli import main
from huse_edge.predictions import model_class

CATEGORY = ("master_category", "sub_category", "article_type")


def _classify(bundle, catalogue, out, *options: str) -> dict:
    result = CliRunner().invoke(main, ["classify", str(bundle), "--catalogue", str(catalogue), "--out", str(out),
                                       *options, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _rows(path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def _predicted(row: dict) -> list[tuple[str, str]]:
    return [(row[f"prediction_{k}"], row[f"probability_{k}"]) for k in range(1, 6) if row[f"prediction_{k}"]]


def test_a_catalogues_predictions_are_what_verify_and_single_classification_give(int8_bundle, trained_model,
                                                                                slice_catalogue, tmp_path):
    bundle = int8_bundle[0]
    report = _classify(bundle, slice_catalogue, tmp_path / "all.csv")
    verified = CliRunner().invoke(main, ["verify", str(bundle), str(slice_catalogue), "--model-dir",
                                         str(trained_model), "--split", "all", "--backend", "litert", "--json"])
    assert verified.exit_code == 0, verified.output
    summary = json.loads(verified.stdout)
    (litert,) = [b for b in summary["backends"] if b["backend"] == "litert"]
    assert report["products"] == report["labelled"] == summary["products"] == 320
    assert report["agreeing"] == round(litert["fused_top1"] * summary["products"])
    rows = _rows(tmp_path / "all.csv")
    products = {row["id"]: row for row in read_rows(slice_catalogue)}
    assert [row["id"] for row in rows] == list(products)
    for row in rows[:3]:
        product = products[row["id"]]
        single = CliRunner().invoke(main, ["classify", str(bundle), "--image",
                                           str(slice_catalogue.parent / product["image"]), "--title", product["title"],
                                           "--json"])
        assert single.exit_code == 0, single.output
        expected = [(" > ".join(e["path"]), f"{e['score']:.4f}") for e in json.loads(single.stdout)]
        assert _predicted(row) == expected
        assert row["category"] == " > ".join(product[c] for c in CATEGORY)
        assert row["agrees"] == ("yes" if expected[0][0] == row["category"] else "no")
    confident = [row for row in rows if float(row["probability_1"]) >= 0.9]  # int8: k/256, never 0.9 itself
    assert (report["confident"], report["confident_labelled"]) == (len(confident), len(confident))
    assert report["confident_agreeing"] == sum(row["agrees"] == "yes" for row in confident)
    disputed = [row for row in rows if row["agrees"] == "no"]
    assert len(disputed) == report["labelled"] - report["agreeing"]
    assert [d["id"] for d in report["disputed"]] == [row["id"] for row in sorted(
        disputed, key=lambda r: (float(r["category_probability"]), -float(r["probability_1"])))][:10]
    val = _classify(bundle, slice_catalogue, tmp_path / "val.csv", "--split", "val")
    assert [row["id"] for row in _rows(tmp_path / "val.csv")] == [i for i in products if split_of(i) == "val"]
    board = cli_without(("tensorflow", "tf_keras", "tensorflow_model_optimization"), "classify", bundle,
                        "--catalogue", slice_catalogue, "--out", tmp_path / "board.csv", "--split", "val", "--json")
    assert board.returncode == 0, board.stderr
    assert json.loads(board.stdout) == {**val, "out": str(tmp_path / "board.csv")}
    assert (tmp_path / "board.csv").read_bytes() == (tmp_path / "val.csv").read_bytes()


def test_products_without_a_category_are_classified_and_bad_rows_named(int8_bundle, slice_catalogue, tmp_path):
    bundle, rows = int8_bundle[0], read_rows(slice_catalogue)[:12]
    labelled = _classify(bundle, write_catalogue(tmp_path / "labelled", rows), tmp_path / "labelled.csv")
    bare = write_catalogue(tmp_path / "bare", [{k: v for k, v in r.items() if k not in CATEGORY} for r in rows])
    report = _classify(bundle, bare, tmp_path / "bare.csv")
    assert (report["products"], report["labelled"], report["unlabelled"]) == (12, 0, 12)
    assert labelled["labelled"] == 12 and report["disputed"] == []
    assert report["confident"] == labelled["confident"] and report["confident_labelled"] == 0
    assert [_predicted(r) for r in _rows(tmp_path / "bare.csv")] == \
        [_predicted(r) for r in _rows(tmp_path / "labelled.csv")]
    assert {r["agrees"] for r in _rows(tmp_path / "bare.csv")} == {""}

    mixed = [dict(r) for r in rows]
    mixed[1].update(master_category="", sub_category="", article_type="")  # not categorised yet
    mixed[2].update(sub_category="")  # a broken path: classified, reported
    mixed[3].update(article_type="Kurtas")  # a class the model never learnt
    mixed[4].update(image="images/missing.jpg")  # cannot be classified: skipped, reported
    watch = next(r for r in read_rows(slice_catalogue) if r["article_type"] == "Watches" and r not in rows)
    shirt = next(r for r in read_rows(slice_catalogue) if r["article_type"] == "Tshirts")
    mixed.append({**watch, **{c: shirt[c] for c in CATEGORY}})  # a watch filed under T-shirts: disputed first
    result = CliRunner().invoke(main, ["classify", str(bundle), "--catalogue",
                                       str(write_catalogue(tmp_path / "mixed", mixed)), "--out",
                                       str(tmp_path / "mixed.csv")])
    assert result.exit_code == 0, result.output
    assert "products.csv:4: category: incomplete category path" in result.output
    assert "classified as unlabelled (kept)" in result.output
    assert "products.csv:6: image: image file not found (images/missing.jpg) (skipped)" in result.output
    assert "12 products classified; 9 with a category among the model's 8 classes, 1 with another category, " \
           "2 without one" in result.output
    by_id = {r["id"]: r for r in _rows(tmp_path / "mixed.csv")}
    assert mixed[4]["id"] not in by_id and len(by_id) == 12
    assert by_id[watch["id"]]["agrees"] == "no" and by_id[watch["id"]]["prediction_1"].endswith("> Watches")
    assert f"disputed categories, least probable first (1 of 1 shown):\n  {watch['id']} " in result.output
    assert by_id[mixed[3]["id"]]["agrees"] == by_id[mixed[1]["id"]]["agrees"] == ""
    assert by_id[mixed[3]["id"]]["category"].endswith("> Kurtas")

    trained = CliRunner().invoke(main, ["train", str(bare), "--out", str(tmp_path / "model")])
    assert trained.exit_code == 2 and "missing column(s) master_category" in trained.output, trained.output


def test_a_catalogue_run_refuses_single_product_options_and_a_folder_as_its_file(int8_bundle, slice_catalogue,
                                                                                 tmp_path):
    bundle, folder = int8_bundle[0], tmp_path / "mine"
    (folder / "keep.txt").parent.mkdir()
    (folder / "keep.txt").write_text("mine")
    for options, message in ((["--out", str(tmp_path / "p.csv"), "--title", "red shirt"], "not both"),
                             ([], "--catalogue needs --out"),
                             (["--out", str(folder)], "is a directory; name a file to write")):
        result = CliRunner().invoke(main, ["classify", str(bundle), "--catalogue", str(slice_catalogue), *options])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    result = CliRunner().invoke(main, ["classify", str(bundle), "--title", "red shirt", "--split", "test"])
    assert result.exit_code == 2 and "go with --catalogue" in result.output, result.output
    assert (folder / "keep.txt").read_text() == "mine" and not (tmp_path / "p.csv").exists()


def test_a_category_names_the_class_at_the_level_the_model_was_trained_at():
    classes = {("Apparel", "Topwear"): 0, ("Footwear",): 1, ("Apparel", "Topwear", "Tshirts"): 2}
    assert model_class(("Apparel", "Topwear", "Tshirts"), classes) == 2
    assert model_class(("Apparel", "Topwear", "Shirts"), classes) == 0
    assert model_class(("Footwear", "Shoes", "Heels"), classes) == 1
    assert model_class(("Accessories", "Watches", "Watches"), classes) is None
    assert model_class((), classes) is None
