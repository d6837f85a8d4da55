"""What an edge board's install (numpy, Pillow, LiteRT; no TensorFlow) can do: run the bundle, verify it against
float outputs recorded where TensorFlow is, and say what the training commands need instead of a traceback.

The board is a subprocess in which importing TensorFlow fails as it does where it is not installed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import cli_without, read_rows

from huse_edge.cli import main
from huse_edge.index import ProductIndex

BACKENDS = ["--backend", "litert", "--backend", "litert-reference"]


def on_board(*args: str | Path) -> subprocess.CompletedProcess:
    return cli_without(("tensorflow", "tf_keras", "tensorflow_model_optimization"), *args)


def _parity(summary: dict) -> dict:
    """A verify summary without its timings, which no two runs share."""
    return {**summary, "backends": [{k: v for k, v in b.items() if not k.startswith("latency")}
                                    for b in summary["backends"]]}


def test_verify_on_a_board_gives_what_verify_gives_next_to_the_keras_model(int8_bundle, trained_model,
                                                                          slice_catalogue, tmp_path):
    bundle, reference = int8_bundle[0], tmp_path / "reference.npz"
    here = CliRunner().invoke(main, ["verify", str(bundle), str(slice_catalogue), "--model-dir", str(trained_model),
                                     "--split", "all", "--max-products", "48", "--save-reference", str(reference),
                                     *BACKENDS, "--json"])
    assert here.exit_code == 0, here.output
    board = on_board("verify", bundle, slice_catalogue, "--reference", reference, *BACKENDS, "--json")
    assert board.returncode == 0, board.stderr
    expected = _parity(json.loads(here.stdout))
    assert expected["products"] == 48 and [b["status"] for b in expected["backends"]] == ["pass", "pass"]
    assert _parity(json.loads(board.stdout)) == expected
    fewer = on_board("verify", bundle, slice_catalogue, "--reference", reference, "--max-products", "10",
                     "--backend", "litert", "--json")
    assert json.loads(fewer.stdout)["products"] == 10, fewer.stderr


def test_a_reference_is_refused_for_another_export_or_other_products(int8_bundle, trained_model, slice_catalogue,
                                                                     tmp_path):
    bundle, reference = int8_bundle[0], tmp_path / "reference.npz"
    recorded = CliRunner().invoke(main, ["verify", str(bundle), str(slice_catalogue), "--model-dir",
                                         str(trained_model), "--split", "all", "--max-products", "8",
                                         "--save-reference", str(reference), "--backend", "litert"])
    assert recorded.exit_code == 0, recorded.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    with np.load(reference) as stored:
        arrays = dict(stored)
    header = json.loads(str(arrays["header"]))
    assert header["bundle_files"] == manifest["files"]

    def refused(name: str, change: dict, message: str) -> None:
        path = tmp_path / name
        np.savez(path, **{**arrays, **change})
        result = CliRunner().invoke(main, ["verify", str(bundle), str(slice_catalogue), "--reference", str(path)])
        assert result.exit_code == 2 and message in result.stderr, result.output
        assert "Traceback" not in result.output

    other_model = {**header["bundle_files"], "huse_int8.tflite": "0" * 64}
    refused("other_export.npz", {"header": np.array(json.dumps({**header, "bundle_files": other_model}))},
            "recorded with another export")
    refused("unknown_product.npz", {"ids": np.array(["no-such-id", *arrays["ids"][1:]])}, "ids no-such-id")
    refused("short.npz", {"labels": arrays["labels"][:3]}, "do not all hold 8 products")
    for name, foreign in (("not_a_reference", {}), ("foreign_columns", {**header, "columns": {"colour": "x"}}),
                          ("foreign_files", {**header, "bundle_files": ["huse_int8.tflite"]})):
        refused(f"{name}.npz", {"header": np.array(json.dumps(foreign))}, "not a huse-edge verify reference")
    result = CliRunner().invoke(main, ["verify", str(bundle), "--reference", str(reference), "--variant", "fp16"])
    assert result.exit_code == 2 and "no 'fp16' model" in result.stderr, result.output
    (tmp_path / "garbage.npz").write_bytes(b"\x00" * 100)
    result = CliRunner().invoke(main, ["verify", str(bundle), "--reference", str(tmp_path / "garbage.npz")])
    assert result.exit_code == 2 and "not an .npz file" in result.stderr, result.output


def test_the_edge_install_runs_bundles_and_names_what_training_needs(int8_bundle, slice_catalogue, slice_index,
                                                                     tmp_path):
    bundle, product = int8_bundle[0], read_rows(slice_catalogue)[0]
    for command in (["classify", str(bundle), "--image", str(slice_catalogue.parent / product["image"]), "--title",
                     product["title"], "--json"],
                    ["search", str(slice_index), "--text", product["title"], "--bundle", str(bundle), "--json"]):
        board, here = on_board(*command), CliRunner().invoke(main, command)
        assert board.returncode == 0, board.stderr
        assert json.loads(board.stdout) == json.loads(here.stdout) != []
    indexed = on_board("index", bundle, slice_catalogue, "--out", tmp_path / "board.hidx")
    assert indexed.returncode == 0, indexed.stderr
    board_index, index = ProductIndex.load(tmp_path / "board.hidx"), ProductIndex.load(slice_index)
    assert [p.id for p in board_index.products] == [p.id for p in index.products]
    for modality, rows in index.embeddings.items():
        np.testing.assert_array_equal(board_index.embeddings[modality], rows)
    trained = on_board("train", slice_catalogue, "--out", tmp_path / "model")
    assert trained.returncode == 2 and "huse-edge train needs TensorFlow" in trained.stderr, trained.stderr
    assert "pip install 'huse-edge[train]'" in trained.stderr and "Traceback" not in trained.stderr
    assert not (tmp_path / "model").exists()
    verified = on_board("verify", bundle, slice_catalogue, "--backend", "litert")
    assert verified.returncode == 2 and "--reference FILE" in verified.stderr, verified.stderr
