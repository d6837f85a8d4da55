"""The Android app's platform-free Kotlin core, compiled and tested on the JVM against golden vectors from the
Python runtime, and the exported int8 bundle run through the LiteRT C API via JNA (android_demo/core)."""

import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from huse_edge.bundle import Bundle
from huse_edge.cli import main

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
