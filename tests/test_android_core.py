"""The Android app's platform-free Kotlin core, compiled and tested on the JVM against golden vectors from the
Python runtime, and the exported int8 bundle run through the LiteRT C API via JNA (android_demo/core)."""

import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from huse_edge.bundle import Bundle
from huse_edge.cli import main
from huse_edge.index import ProductIndex, part_name

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "android_demo" / "core" / "run-tests.sh"


def _litert_library() -> Path:
    import ai_edge_litert

    return Path(ai_edge_litert.__file__).parent / "libLiteRt.so"


def test_app_assets_are_a_verifiable_one_variant_bundle(int8_bundle, slice_index, tmp_path):
    out = tmp_path / "assets"
    result = CliRunner().invoke(main, ["android", "assets", str(int8_bundle[0]), "--index", str(slice_index),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(out)  # every hash checked, the index among the files
    assert bundle.variants == ["int8"] and "products.hidx" in bundle.manifest["files"]
    assert sorted(p.name for p in out.glob("*.tflite")) == ["huse_int8.tflite"]
    io = bundle.manifest["variants"]["int8"]["io"]
    assert io["embed_image"]["inputs"]["image"]["dtype"] == "uint8"
    assert io["embed_text"]["outputs"]["embedding"]["scale"] > 0


def test_app_assets_take_an_index_of_their_model_as_one_file_without_graphs(int8_bundle, slice_index, tmp_path):
    index = ProductIndex.load(slice_index)
    ids = [p.id for p in index.products]
    parts = tmp_path / "parts"
    parts.mkdir()
    for shard, drop in enumerate((ids[len(ids) // 2:], ids[: len(ids) // 2])):
        part = index.without(drop)
        part.searcher("image")  # an HNSW graph, which `save` stores and the app has no use for
        part.save(parts / part_name(shard, 2))
    assert "image.hnsw.faiss" in zipfile.ZipFile(parts / part_name(0, 2)).namelist()
    out = tmp_path / "assets"
    result = CliRunner().invoke(main, ["android", "assets", str(int8_bundle[0]), "--index", str(parts),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Bundle.load(out).manifest["files"]["products.hidx"]  # hashed like every asset
    copied = ProductIndex.load(out / "products.hidx")
    assert [p.id for p in copied.products] == ids and not copied.ann
    assert all(np.array_equal(copied.embeddings[m], index.embeddings[m]) for m in index.embeddings)

    # the slice index was embedded by the int8 model: the float variant's app would compare unrelated vectors
    refused = tmp_path / "refused"
    result = CliRunner().invoke(main, ["android", "assets", str(int8_bundle[0]), "--variant", "float", "--index",
                                       str(slice_index), "--out", str(refused)])
    assert result.exit_code == 2 and "built with another model" in result.output, result.output
    assert "Traceback" not in result.output and not refused.exists()


def test_kotlin_core_and_litert_jna_match_the_python_runtime(int8_bundle, slice_catalogue, slice_index, tmp_path):
    golden = tmp_path / "golden"
    result = CliRunner().invoke(main, ["android", "golden", str(int8_bundle[0]), str(slice_catalogue), "--out",
                                       str(golden), "--index", str(slice_index), "--split", "all"])
    assert result.exit_code == 0, result.output
    products = len((golden / "products.jsonl").read_text().splitlines())
    run = subprocess.run([str(SCRIPT), "--bundle", str(int8_bundle[0]), "--golden", str(golden), "--index",
                          str(slice_index), "--litert", str(_litert_library())],
                         capture_output=True, text=True, timeout=900)
    if run.returncode == 3:
        pytest.skip(run.stderr.strip())
    closing = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", run.stdout, re.MULTILINE)
    assert closing, run.stdout + run.stderr
    passed, failed, skipped = map(int, closing.groups())
    assert run.returncode == 0 and failed == 0 and skipped == 0 and passed >= 20, run.stdout
    assert f"fused top-1 equal to the Python runtime on {products} of {products} products" in run.stdout
