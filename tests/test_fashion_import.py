import csv

from click.testing import CliRunner
from PIL import Image

from huse_edge.catalogue import read_catalogue
from huse_edge.cli import main


def test_import_published_layout(tmp_path):
    source = tmp_path / "raw"
    (source / "images").mkdir(parents=True)
    for pid in ("15970", "39386"):
        Image.new("RGB", (60, 80), (10, 20, 30)).save(source / "images" / f"{pid}.jpg")
    (source / "styles.csv").write_text(
        "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
        "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n"
        "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Party, Blue Jeans\n"
        "59263,Women,Accessories,Watches,Watches,Silver,Winter,2016,Casual,Titan Women Silver Watch\n")
    result = CliRunner().invoke(main, ["data", "import-fashion", str(source), "--out", str(tmp_path / "cat")])
    assert result.exit_code == 0, result.output
    assert "59263.jpg not found" in result.output and "2 products written" in result.output
    rows = list(csv.DictReader((tmp_path / "cat" / "products.csv").open()))
    assert rows[1]["title"] == "Peter England Men Party, Blue Jeans"
    catalogue = read_catalogue(tmp_path / "cat" / "products.csv")
    assert [p.path for p in catalogue.products] == [("Apparel", "Topwear", "Shirts"),
                                                    ("Apparel", "Bottomwear", "Jeans")]
