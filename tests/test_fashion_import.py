import csv
import re

import pytest
from click.testing import CliRunner
from PIL import Image

from huse_edge.catalogue import read_catalogue
from huse_edge.cli import main


def _publish(source):
    """The published layout: styles.csv (one name with an unquoted comma, one row without its photo, one whose id
    is a path to another's photo) + images/."""
    (source / "images").mkdir(parents=True)
    for pid in ("15970", "39386"):
        Image.new("RGB", (60, 80), (10, 20, 30)).save(source / "images" / f"{pid}.jpg")
    (source / "styles.csv").write_text(
        "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
        "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n"
        "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Party, Blue Jeans\n"
        "59263,Women,Accessories,Watches,Watches,Silver,Winter,2016,Casual,Titan Women Silver Watch\n"
        "../images/15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n")


@pytest.mark.parametrize("folder", ["", "myntradataset"])
def test_import_published_layout(tmp_path, folder):
    _publish(tmp_path / "raw" / folder)
    out = tmp_path / "cat"
    result = CliRunner().invoke(main, ["data", "import-fashion", str(tmp_path / "raw"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "59263.jpg not found" in result.output and "2 products written" in result.output
    assert "styles.csv:5: id '../images/15970' is not a number, as the published ids are" in result.output
    rows = list(csv.DictReader((out / "products.csv").open()))
    assert rows[1]["title"] == "Peter England Men Party, Blue Jeans"
    catalogue = read_catalogue(out / "products.csv")
    assert [p.path for p in catalogue.products] == [("Apparel", "Topwear", "Shirts"),
                                                    ("Apparel", "Bottomwear", "Jeans")]


def test_import_names_what_it_looked_for(tmp_path):
    raw = tmp_path / "raw"
    _publish(raw / "a")
    _publish(raw / "b")
    out = tmp_path / "cat"
    for source, says in ((raw, f"found several: {raw / 'a'}, {raw / 'b'}"), (raw / "a" / "images", "found none")):
        result = CliRunner().invoke(main, ["data", "import-fashion", str(source), "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert f"{source}: expected the published styles.csv" in result.output and says in result.output
    assert not out.exists()


def test_train_without_a_catalogue_prints_the_commands_that_make_one(tmp_path, monkeypatch):
    """The hint's import command, run on the archive's layout where its download command unpacks it, writes the
    catalogue the hint then trains on."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train"])
    assert result.exit_code == 2 and "no catalogue at ../shared/data/fashion-products/products.csv" in result.output
    hint = " ".join(result.output.split())
    download = re.search(r"kaggle datasets download -d \S+ --unzip -p (\S+)", hint)
    imported = re.search(r"huse-edge (data import-fashion \S+ --out \S+)", hint)
    trained = re.search(r"then run: huse-edge train (\S+)", hint)
    assert download and imported and trained and "kaggle.json" in hint
    _publish(tmp_path / download.group(1) / "myntradataset")
    assert CliRunner().invoke(main, imported.group(1).split()).exit_code == 0
    assert len(read_catalogue(tmp_path / trained.group(1)).products) == 2


def test_train_on_a_folder_that_holds_no_shards_says_what_it_expects(tmp_path):
    result = CliRunner().invoke(main, ["train", str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"{tmp_path} is a folder without the shards.json of `huse-edge data shard`" in result.output
