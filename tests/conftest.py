"""Shared fixtures: the real catalogue in ../shared, a small slice of it, a model trained on the slice and a
bundle exported from that model. Trained and exported once per test session."""

from __future__ import annotations

import collections
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = (REPO.parent / "shared" / "data" / "fashion-products" / "products.csv").resolve()
SLICE_CLASSES = ("Tshirts", "Watches", "Casual Shoes", "Handbags", "Sunglasses", "Jeans", "Heels", "Belts")
PER_CLASS = 40


def require_catalogue() -> Path:
    if not CATALOGUE.is_file():
        pytest.skip(f"the shared catalogue is not at {CATALOGUE}")
    return CATALOGUE


_CLI_WITHOUT = """
import sys

MISSING = sys.argv.pop(1).split(",")

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NotInstalled())
from huse_edge.cli import main
main(prog_name="huse-edge")
"""


def cli_without(packages: tuple[str, ...], *args: str | Path) -> subprocess.CompletedProcess:
    """`huse-edge ARGS` in a process where importing these packages fails as it does where they are not installed."""
    return subprocess.run([sys.executable, "-c", _CLI_WITHOUT, ",".join(packages), *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def write_catalogue(folder: Path, rows: list[dict]) -> Path:
    """A catalogue in `folder` with copies of the rows' photos (catalogue images must live under its folder)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for row in rows:
        source = CATALOGUE.parent / row["image"]
        if source.is_file():
            shutil.copyfile(source, folder / row["image"])
    path = folder / "products.csv"
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def slice_catalogue(tmp_path_factory) -> Path:
    """320 real products of 8 article types."""
    rows = read_rows(require_catalogue())
    taken: dict[str, list] = collections.defaultdict(list)
    for row in rows:
        if row["article_type"] in SLICE_CLASSES and len(taken[row["article_type"]]) < PER_CLASS:
            taken[row["article_type"]].append(row)
    return write_catalogue(tmp_path_factory.mktemp("slice"), [r for rs in taken.values() for r in rs])


@pytest.fixture(scope="session")
def trained_model(slice_catalogue, tmp_path_factory) -> Path:
    from huse_edge.recipe import TrainConfig
    from huse_edge.train import train

    out = tmp_path_factory.mktemp("model")
    train(slice_catalogue, out, {"trainable_blocks": 1, "embedding_dim": 64, "image_hidden": 128,
                                 "text_hidden": 128, "text_filters": 64, "token_dim": 32},
          TrainConfig(epochs=15, batch_size=32, patience=15, min_class_size=5))
    return out


@pytest.fixture(scope="session")
def int8_bundle(trained_model, slice_catalogue, tmp_path_factory) -> tuple[Path, dict]:
    from converters.export import export_bundle
    from huse_edge.recipe import QatConfig

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    parity = export_bundle(trained_model, out, ["float", "dynamic", "int8"], slice_catalogue, margin=100.0,
                           qat=QatConfig(products=64), calibration_products=32)
    return out, parity


@pytest.fixture(scope="session")
def slice_index(int8_bundle, slice_catalogue, tmp_path_factory) -> Path:
    """`huse-edge index` of the slice with the int8 bundle."""
    from click.testing import CliRunner

    from huse_edge.cli import main

    out = tmp_path_factory.mktemp("index") / "slice.hidx"
    result = CliRunner().invoke(main, ["index", str(int8_bundle[0]), str(slice_catalogue), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out
