"""Untrusted input and interruptions: unusual and hostile images, fuzzed bundles, a training run and an export
killed with SIGKILL, and byte-identical conversions."""

import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from huse_edge.bundle import MANIFEST, Bundle, BundleError, sha256_of
from huse_edge.runtime import BackendUnavailable, HuseRuntime, InputError, RuntimeOptions
from huse_edge.transform import SPEC_VERSION as PREPROCESSING_VERSION, ImageError, load_rgb

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                max_size=4), max_leaves=12)


def test_unusual_image_modes_become_rgb(tmp_path):
    Image.new("CMYK", (6, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("L", (6, 8), 77).save(tmp_path / "grey.png")
    palette = Image.new("P", (6, 8), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    Image.new("RGBA", (6, 8), (255, 0, 0, 0)).save(tmp_path / "transparent.png")
    rotated = Image.new("RGB", (6, 8), (0, 0, 255))
    exif = rotated.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display
    rotated.save(tmp_path / "rotated.jpg", exif=exif)

    cmyk = load_rgb(tmp_path / "cmyk.jpg")
    assert cmyk.shape == (8, 6, 3) and cmyk[0, 0, 0] > 200 and cmyk[0, 0, 1] < 60  # CMYK (0,255,255,0) is red
    assert np.all(load_rgb(tmp_path / "grey.png") == 77)
    assert load_rgb(tmp_path / "palette.png")[0, 0].tolist() == [10, 200, 30]
    assert np.all(load_rgb(tmp_path / "transparent.png") == 255)  # alpha composited onto white
    assert load_rgb(tmp_path / "rotated.jpg").shape == (6, 8, 3)  # EXIF orientation applied


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 megapixels that compress to a few kilobytes
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImageError, match="exceeds"):
        load_rgb(bomb)


MANIFEST_KEYS = ("format_version", "files", "variants", "num_classes", "vocab_size", "embedding_dim",
                 "fusion_image_weight", "signatures", "parity", "source_model_dir", "source_model_sha256")


@pytest.fixture
def fresh_bundle(int8_bundle, tmp_path) -> Callable[[], Path]:
    """Gives each hypothesis example an untouched copy of the int8 bundle in one folder, so that a test holds one
    65 MB copy on disk, not one per example (85 of them filled a CI machine's disk)."""
    copy = tmp_path / "bundle"

    def refresh() -> Path:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(int8_bundle[0], copy)
        return copy
    return refresh


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(MANIFEST_KEYS), JSON)
def test_fuzzed_manifest_is_refused_or_still_runs(fresh_bundle, key, value):
    """Any value in any manifest field: a BundleError at load, or a bundle that loads and runs (the field is not
    one loading or running relies on). Never another exception."""
    copy = fresh_bundle()
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest[key] = value
    (copy / MANIFEST).write_text(json.dumps(manifest))
    try:
        bundle = Bundle.load(copy)
    except BundleError:
        return
    runtime = HuseRuntime(bundle, "int8")
    assert runtime.embed_text(["red cotton shirt"]).shape[0] == 1
    assert 0 <= bundle.fusion_image_weight <= 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=4096), st.integers(min_value=0, max_value=100))
def test_garbage_model_with_a_matching_hash_is_refused_not_run(fresh_bundle, junk, keep_percent):
    """A model file re-signed in the manifest (so the hash check passes) that is truncated or random bytes."""
    copy = fresh_bundle()
    model = copy / "huse_int8.tflite"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) * keep_percent // 100 // 2] + junk)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"]["huse_int8.tflite"] = sha256_of(model)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BackendUnavailable, match="cannot load"):
        HuseRuntime(Bundle.load(copy), "int8")


def test_a_newer_preprocessing_spec_is_refused(fresh_bundle):
    """A bundle whose photos must be prepared in a way this huse-edge does not know, re-signed so its hashes pass."""
    copy = fresh_bundle()
    spec = json.loads((copy / "preprocessing.json").read_text())
    assert spec["version"] == PREPROCESSING_VERSION
    spec["version"] = PREPROCESSING_VERSION + 1
    (copy / "preprocessing.json").write_text(json.dumps(spec))
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["files"]["preprocessing.json"] = sha256_of(copy / "preprocessing.json")
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"preprocessing spec version {PREPROCESSING_VERSION + 1}"):
        Bundle.load(copy)


def test_an_absent_runtime_is_reported_with_what_installs_it(int8_bundle, monkeypatch):
    """A board or venv without an interpreter gets the pip line, not an ImportError traceback."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # what importing an absent package finds
    with pytest.raises(BackendUnavailable, match=re.escape("tf-lite: not installed")) as error:
        HuseRuntime(Bundle.load(int8_bundle[0]), "int8", RuntimeOptions.from_label("tf-lite"))
    assert "pip install 'huse-edge[train]'" in str(error.value)


def test_wrong_shapes_and_dtypes_are_refused(int8_bundle):
    runtime = HuseRuntime(Bundle.load(int8_bundle[0]), "int8")
    with pytest.raises(InputError, match="image batch"):
        runtime.embed_image(np.zeros((1, 10, 10, 3), np.uint8))
    with pytest.raises(InputError, match="tokens"):
        runtime.embed_text(np.zeros((1, 3), np.int32))
    with pytest.raises(InputError):
        runtime.classify(np.zeros((1, 7), np.float32))


TRAIN = """
import sys
from huse_edge.recipe import TrainConfig
from huse_edge.train import train
train(sys.argv[1], sys.argv[2], {"trainable_blocks": 1, "embedding_dim": 64, "image_hidden": 128,
      "text_hidden": 128, "text_filters": 64, "token_dim": 32},
      TrainConfig(epochs=8, batch_size=32, patience=8, min_class_size=5), cache_dir=sys.argv[3])
"""


def _train(catalogue: Path, out: Path, cache: Path, kill_at: str | None = None) -> list[str]:
    """Runs a real training process; with `kill_at`, SIGKILLs it once that line has been printed."""
    process = subprocess.Popen([sys.executable, "-c", TRAIN, str(catalogue), str(out), str(cache)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip())
        if kill_at and line.startswith(kill_at):
            time.sleep(0.3)  # into the epoch's steps
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=600)
    assert (process.returncode == -signal.SIGKILL) if kill_at else process.returncode == 0, "\n".join(lines[-30:])
    return lines


@pytest.fixture(scope="module")
def straight_run(slice_catalogue, trained_model, tmp_path_factory) -> Path:
    """An uninterrupted run of the same configuration (the features come from the fixture's cache)."""
    out = tmp_path_factory.mktemp("straight")
    _train(slice_catalogue, out, trained_model / "cache")
    return out


@pytest.mark.slow
def test_training_with_a_seed_is_repeatable(slice_catalogue, trained_model, straight_run, tmp_path):
    _train(slice_catalogue, tmp_path / "again", trained_model / "cache")
    first = json.loads((straight_run / "metrics.json").read_text())
    second = json.loads((tmp_path / "again" / "metrics.json").read_text())
    for key in ("image_top1", "text_top1", "fused_top1", "text_to_image_R@1"):
        assert first[key] == second[key], key  # same seed, same CPU build: identical decisions


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_and_reaches_the_same_quality(slice_catalogue, trained_model, straight_run,
                                                                       tmp_path):
    cache = trained_model / "cache"
    _train(slice_catalogue, tmp_path / "killed", cache, kill_at="Epoch 4/8")
    assert not (tmp_path / "killed" / "model.keras").exists()
    finished = len((tmp_path / "killed" / "history.csv").read_text().splitlines()) - 1  # epochs logged before the kill
    # the command line's defaults are another recipe: its weights would not even fit their network
    from click.testing import CliRunner

    from huse_edge.cli import main
    from huse_edge.recipe import HuseConfig

    other = CliRunner().invoke(main, ["train", str(slice_catalogue), "--out", str(tmp_path / "killed"),
                                      "--cache-dir", str(cache)])
    assert other.exit_code == 2 and "Traceback" not in other.output, other.output
    assert (f"holds an interrupted run with other settings (model.embedding_dim 64 -> {HuseConfig.embedding_dim};"
            in other.output)
    resumed = _train(slice_catalogue, tmp_path / "killed", cache)
    first = int(next(line for line in resumed if line.startswith("Epoch ")).split()[1].split("/")[0])
    # The resumed run starts after the last backed-up epoch (the backup is written just before the CSV row), not
    # from scratch.
    assert finished >= 3 and first in (finished + 1, finished + 2), (finished, first)
    after = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    straight = json.loads((straight_run / "metrics.json").read_text())
    # Same quality: within two standard errors of the difference of two accuracies on this test split.
    p, n = straight["fused_top1"], straight["products"]
    assert abs(after["fused_top1"] - p) <= 2 * math.sqrt(2 * max(p * (1 - p), 1 / n) / n) + 1 / n


@pytest.mark.slow
def test_export_killed_while_writing_leaves_the_previous_bundle_intact(int8_bundle, trained_model, slice_catalogue,
                                                                     tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(int8_bundle[0], bundle)
    before = {p.name: sha256_of(p) for p in bundle.rglob("*") if p.is_file()}
    process = subprocess.Popen([sys.executable, "-m", "huse_edge", "export",
                                str(trained_model), "--out",
                                str(bundle), "--catalogue", str(slice_catalogue), "--float"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not list(tmp_path.glob(".bundle.*.tmp")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "export ended before it started writing"
    assert {p.name: sha256_of(p) for p in bundle.rglob("*") if p.is_file()} == before
    Bundle.load(bundle)  # every hash still matches


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["export", "{model}", "--int8", "--out", "{folder}"],
    ["android", "assets", "{bundle}", "--out", "{folder}"],
    ["android", "golden", "{bundle}", "{catalogue}", "--out", "{folder}", "--max-products", "2"],
    ["index", "{bundle}", "{catalogue}", "--out", "{folder}", "--rebuild"],
    ["verify", "{bundle}", "--report", "{folder}"],
    ["data", "shard", "{catalogue}", "--out", "{folder}"],
], ids=lambda command: " ".join(command[:2]))
def test_an_output_path_naming_a_users_folder_is_refused_not_replaced(int8_bundle, trained_model, slice_catalogue,
                                                                     tmp_path, command):
    from click.testing import CliRunner

    from huse_edge.cli import main

    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    paths = {"model": trained_model, "bundle": int8_bundle[0], "catalogue": slice_catalogue, "folder": folder}
    result = CliRunner().invoke(main, [part.format(**paths) for part in command])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert str(folder) in result.output and "directory" in result.output
    assert [p.name for p in folder.iterdir()] == ["notes.txt"] and (folder / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".documents*"))


def test_a_directory_artifact_replaces_only_an_empty_folder_or_an_earlier_one_of_its_kind(tmp_path):
    from huse_edge.atomic import ArtifactPathError, atomic_path

    def write(destination: Path, content: str) -> None:
        with atomic_path(destination, "marker.json") as tmp:
            tmp.mkdir()
            (tmp / "marker.json").write_text(content)

    empty, earlier, other = tmp_path / "empty", tmp_path / "earlier", tmp_path / "other"
    empty.mkdir()
    write(empty, "1")
    write(earlier, "1")
    write(earlier, "2")
    assert (empty / "marker.json").read_text() == "1" and (earlier / "marker.json").read_text() == "2"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ArtifactPathError, match="no marker.json"):
        write(other, "1")
    with pytest.raises(ArtifactPathError, match="is a file"):
        write(other / "keep.txt", "1")
    with pytest.raises(ArtifactPathError, match="is a directory"), atomic_path(other) as tmp:
        tmp.write_text("a file over a folder")
    assert [p.name for p in other.iterdir()] == ["keep.txt"]


@pytest.mark.slow
def test_conversion_is_byte_identical_from_the_same_weights(trained_model):
    from converters.tflite import convert
    from huse_edge.model_dir import ModelDir

    model = ModelDir.load(trained_model).keras_model()
    first, second = convert(model, ["float"])["float"], convert(model, ["float"])["float"]
    assert first.keys() == second.keys() and all(first[k] == second[k] for k in first)
