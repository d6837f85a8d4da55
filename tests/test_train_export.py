"""A real (short) training on a slice of the catalogue, a real QAT export, and the runtime on every backend."""

import ctypes.util
import gc
import io
import json
import re
import shutil
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from huse_edge.bundle import Bundle, BundleError
from huse_edge.catalogue import split_of
from huse_edge.cli import main
from huse_edge.model_dir import ModelDir
from huse_edge.runtime import BackendUnavailable, HuseRuntime, RuntimeOptions
from huse_edge.tolerance import output_grids, step_tolerances
from huse_edge.verify import row_cosines

from conftest import read_rows, write_catalogue

pytestmark = pytest.mark.slow


def test_train_command_hands_every_option_to_the_recipe(slice_catalogue, trained_model, tmp_path, monkeypatch):
    """Each recipe option of `huse-edge train` reaches the HuseConfig, TrainConfig and LossWeights the model
    directory records, and the options left out keep the recipe's defaults; a catalogue given by a relative path is
    recorded as an absolute one, so evaluate, export and verify find it from any folder."""
    from huse_edge.recipe import LossWeights, TrainConfig

    chosen_train = {"epochs": 1, "batch_size": 16, "learning_rate": 2e-3, "patience": 4, "seed": 3,
                    "min_class_size": 6, "token_dropout": 0.1, "weight_average": 0.9, "finetune_epochs": 1,
                    "finetune_learning_rate": 1e-4, "finetune_batch_size": 8, "finetune_from_block": 4,
                    "keep_depthwise": False}
    chosen_loss = {"class_level": 0.5, "semantic": 2.0, "gap": 1.5, "threshold": 0.7, "label_smoothing": 0.1,
                   "fused": 0.5}
    chosen = {**chosen_train, **chosen_loss}
    flags = {**{name: name.replace("_", "-") for name in chosen}, "class_level": "class-weight",
             "semantic": "graph-weight", "gap": "gap-weight", "threshold": "graph-threshold", "fused": "fused-weight",
             "keep_depthwise": "train-depthwise"}
    options = [item for name, value in chosen.items()
               for item in ((f"--{flags[name]}",) if isinstance(value, bool) else (f"--{flags[name]}", str(value)))]
    monkeypatch.chdir(slice_catalogue.parent)
    result = CliRunner().invoke(main, ["train", slice_catalogue.name, "--out", str(tmp_path / "m"), "--cache-dir",
                                       str(trained_model / "cache"), "--trainable-blocks", "1",
                                       "--embedding-dim", "32", "--logit-scale", "20", *options])
    assert result.exit_code == 0, result.output
    assert ModelDir.load(tmp_path / "m").training_catalogue() == slice_catalogue.resolve()
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (config["model"]["embedding_dim"], config["model"]["logit_scale"]) == (32, 20.0)
    assert config["train"] == {**asdict(TrainConfig()), **chosen_train}
    assert config["loss"] == {**LossWeights().to_dict(), **chosen_loss}


def test_training_writes_a_complete_model_directory(trained_model):
    model_dir = ModelDir.load(trained_model)
    metrics = model_dir.metrics
    assert {"image_top1", "text_top1", "fused_top1", "text_to_image_R@1", "fused_level0_top1"} <= set(metrics)
    assert metrics["fused_top1"] > 0.6 and metrics["text_to_image_R@1"] > 0.4  # 8 classes: chance is 0.125
    history = (trained_model / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    assert {"class_loss", "graph_loss", "gap_loss", "fused_class_loss", "val_graph_loss"} <= set(header)
    for name in ("class_loss", "graph_loss", "gap_loss"):  # every loss is active: positive and logged per epoch
        values = [float(line.split(",")[header.index(name)]) for line in history[1:]]
        assert len(values) >= 2 and all(v > 0 for v in values)
    assert model_dir.keras_model().get_layer("shared_classifier") is not None


def _largest_change(layer, trained) -> float:
    """The largest absolute change of any weight of `layer` (as built, before training) in the trained model."""
    return max(np.abs(a - b).max() for a, b in zip(layer.get_weights(), trained.get_layer(layer.name).get_weights()))


def test_finetune_trains_the_backbone_from_its_first_tuned_block(trained_model):
    """The fine-tune phase moves the backbone's bottom (frozen while training on cached features) from block
    `finetune_from_block` up, keeps the stem, the blocks before it, the ImageNet batch statistics and (the default
    for EfficientNet-Lite0) the depthwise kernels bit for bit, numbers its epochs on from the cached phase's and
    reports its own throughput."""
    from huse_edge._tf import keras
    from huse_edge.backbones import early_layer_prefixes
    from huse_edge.model import build_huse
    from huse_edge.recipe import HuseConfig

    config = json.loads((trained_model / "config.json").read_text())
    from_block = config["train"]["finetune_from_block"]
    assert from_block > 0  # the default keeps some blocks, so both sides of the boundary are checked
    assert config["train"]["keep_depthwise"] is True
    early = early_layer_prefixes(config["model"]["backbone"], from_block)
    pretrained = build_huse(HuseConfig.from_dict(config["model"]))
    model_dir = ModelDir.load(trained_model)
    trained = model_dir.keras_model()
    kept, moved = [], []
    for layer in pretrained.feature_extractor.layers:
        if not layer.get_weights():
            continue
        change = _largest_change(layer, trained)
        if isinstance(layer, (keras.layers.BatchNormalization, keras.layers.DepthwiseConv2D)) \
                or layer.name.startswith(early):
            kept.append((layer.name, change))
        else:
            moved.append((layer.name, change))
    assert any(name.startswith(early[0]) for name, _ in kept) and len(kept) > len(early), kept
    assert any(name.startswith(f"effnet_block{from_block}_dw") for name, _ in kept), kept
    assert all(change == 0 for _, change in kept), [k for k in kept if k[1]]
    assert moved and all(change > 1e-5 for _, change in moved), moved
    assert moved[0][0].startswith(f"effnet_block{from_block}_"), moved[0]
    metrics, finetune_epochs = model_dir.metrics, config["train"]["finetune_epochs"]
    assert metrics["finetune_epochs"] == finetune_epochs > 0 and metrics["finetune_products_per_second"] > 0
    epochs = [int(line.split(",")[0]) for line in (trained_model / "history.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(metrics["cached_epochs"] + finetune_epochs)), epochs


def test_train_depthwise_moves_the_depthwise_kernels_of_the_tuned_blocks(slice_catalogue, trained_model, tmp_path):
    """`--train-depthwise` (keep_depthwise=False) trains every depthwise kernel of the blocks both phases train,
    which the default keeps as ImageNet trained them."""
    from huse_edge._tf import keras
    from huse_edge.model import build_huse
    from huse_edge.recipe import HuseConfig, TrainConfig
    from huse_edge.efficientnet_lite import NUM_BLOCKS
    from huse_edge.train import train

    out = tmp_path / "m"
    train(slice_catalogue, out, {"trainable_blocks": 1, "embedding_dim": 64, "image_hidden": 128, "text_hidden": 128,
                                 "text_filters": 64, "token_dim": 32},
          TrainConfig(epochs=1, batch_size=32, min_class_size=5, finetune_epochs=1, keep_depthwise=False),
          cache_dir=trained_model / "cache")
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["keep_depthwise"] is False
    tuned = tuple(f"effnet_block{b}_" for b in range(config["train"]["finetune_from_block"], NUM_BLOCKS))
    pretrained = build_huse(HuseConfig.from_dict(config["model"])).inference
    trained = ModelDir.load(out).keras_model()
    depthwise = {layer.name: _largest_change(layer, trained) for layer in pretrained.layers
                 if layer.name.startswith(tuned) and isinstance(layer, keras.layers.DepthwiseConv2D)}
    assert len(depthwise) == NUM_BLOCKS - config["train"]["finetune_from_block"], depthwise
    assert all(change > 1e-5 for change in depthwise.values()), depthwise


@pytest.mark.parametrize("options, message", [
    (["--finetune-from-block", "17"], "efficientnet_lite0 has 16 blocks"),
    (["--trainable-blocks", "17"], "efficientnet_lite0 has 16 blocks; cannot train the top 17"),
    (["--backbone", "mobilenet_v2", "--trainable-blocks", "3"], "applies to efficientnet_lite0 only"),
    (["--backbone", "small_cnn", "--keep-depthwise"], "small_cnn has no ImageNet weights"),
    (["--batch-size", "0"], "'--batch-size': 0 is not in the range x>=1"),
    (["--learning-rate", "0"], "'--learning-rate': 0.0 is not in the range x>0.0"),
    (["--logit-scale", "-1"], "'--logit-scale': -1.0 is not in the range x>0.0"),
    (["--image-size", "16x96"], "each side must be at least 32 pixels"),
    (["--class-level", "3"], "class level 3 is outside its category path of 3 levels"),
    (["--class-embeddings", "{tmp}/rows.npy"], "one row per class in labels.txt order; got float32 of shape (2, 4)"),
    (["--class-embeddings", "{tmp}/objects.npy"], "not a .npy number array (Object arrays cannot be loaded"),
])
def test_an_option_value_training_cannot_honour_is_a_clear_error_before_training(slice_catalogue, tmp_path,
                                                                                 options, message):
    np.save(tmp_path / "rows.npy", np.ones((2, 4), np.float32))
    np.save(tmp_path / "objects.npy", np.array([{"class": "Shirts"}]), allow_pickle=True)
    options = [option.format(tmp=tmp_path) for option in options]
    result = CliRunner().invoke(main, ["train", str(slice_catalogue), "--out", str(tmp_path / "m"), *options])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_a_catalogue_without_a_test_split_is_a_clear_error_for_train_and_evaluate(slice_catalogue, trained_model,
                                                                                   tmp_path):
    rows = [row for row in read_rows(slice_catalogue) if split_of(row["id"]) != "test"]
    catalogue = write_catalogue(tmp_path / "catalogue", rows)
    for command in (["train", str(catalogue), "--out", str(tmp_path / "m")],
                    ["evaluate", str(trained_model), str(catalogue)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert f"{catalogue}: the test split (80/10/10 of the ids by sha1) holds no product" in result.output
    assert not (tmp_path / "m").exists()


def test_verify_refuses_a_model_directory_that_no_longer_holds_the_bundles_model(int8_bundle, trained_model,
                                                                                tmp_path):
    retrained = tmp_path / "model"
    shutil.copytree(trained_model, retrained, ignore=shutil.ignore_patterns("cache", "checkpoints", "bundle", "logs"))
    with (retrained / "model.keras").open("ab") as stream:  # another model file where the bundle's came from
        stream.write(b"\0")
    result = CliRunner().invoke(main, ["verify", str(int8_bundle[0]), "--model-dir", str(retrained)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "holds another model than the one" in result.output and "export it again" in result.output


def test_a_model_whose_training_catalogue_is_gone_asks_for_one(trained_model, int8_bundle, tmp_path):
    moved = tmp_path / "model"
    shutil.copytree(trained_model, moved, ignore=shutil.ignore_patterns("cache", "checkpoints", "bundle", "logs"))
    metrics = json.loads((moved / "metrics.json").read_text())
    (moved / "metrics.json").write_text(json.dumps({**metrics, "catalogue": "data/products.csv"}))  # as recorded
    # before catalogues were recorded as absolute paths, from a folder other than training's
    for command in (["export", str(moved), "--int8", "--out", str(tmp_path / "bundle")],
                    ["verify", str(int8_bundle[0]), "--model-dir", str(moved)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert "data/products.csv, is not found from the current folder; name the catalogue" in result.output
    assert not (tmp_path / "bundle").exists()


def test_gap_loss_brings_modalities_together(slice_catalogue, trained_model, tmp_path):
    from huse_edge.recipe import LossWeights, TrainConfig
    from huse_edge.train import train

    config = json.loads((trained_model / "config.json").read_text())
    overrides = {k: config["model"][k] for k in ("trainable_blocks", "embedding_dim", "image_hidden", "text_hidden",
                                                 "text_filters", "token_dim")}
    without_gap = train(slice_catalogue, tmp_path / "nogap", overrides,
                        TrainConfig(epochs=15, batch_size=32, patience=15, min_class_size=5),
                        LossWeights(gap=0.0), cache_dir=trained_model / "cache")
    with_gap = ModelDir.load(trained_model).metrics
    assert with_gap["image_text_cosine"] > without_gap["image_text_cosine"] + 0.1


def test_evaluate_command_reproduces_training_metrics(trained_model, slice_catalogue):
    result = CliRunner().invoke(main, ["evaluate", str(trained_model), str(slice_catalogue), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)  # the JSON document alone: progress goes to stderr
    saved = ModelDir.load(trained_model).metrics
    assert abs(metrics["fused_top1"] - saved["fused_top1"]) < 0.02


def test_bundle_signatures_dtypes_and_hashes(int8_bundle):
    path, parity = int8_bundle
    bundle = Bundle.load(path)
    assert set(bundle.variants) == {"float", "dynamic", "int8"}
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(bundle.model_file("int8")))
    signatures = interpreter.get_signature_list()
    assert set(signatures) == {"embed_image", "embed_text", "classify", "classify_product"}
    image_in = interpreter.get_signature_runner("embed_image").get_input_details()["image"]
    tokens_in = interpreter.get_signature_runner("embed_text").get_input_details()["tokens"]
    out = interpreter.get_signature_runner("embed_image").get_output_details()["embedding"]
    assert image_in["dtype"] == np.uint8 and tokens_in["dtype"] == np.int32 and out["dtype"] == np.int8
    assert out["quantization"][0] > 0  # scale carried in the model
    for name in ("embed_image", "classify"):
        single = Interpreter(model_path=str(bundle.model_file("int8", name)))
        assert list(single.get_signature_list()) == [name]
    assert parity["float"]["agreement_with_float"] > 0.99  # the float TFLite model is the Keras model


def test_int8_bundle_agrees_with_float(int8_bundle):
    assert int8_bundle[1]["int8"]["agreement_with_float"] > 0.9


def test_int8_bundle_is_at_most_30_percent_of_float(int8_bundle):
    bundle = Bundle.load(int8_bundle[0])
    assert bundle.model_file("int8").stat().st_size < 0.3 * bundle.model_file("float").stat().st_size


def _int8_contents(bundle: Path) -> tuple:
    """What an int8 file computes with and ships: every buffer, every tensor's quantisation, and each associated
    file's name, date and checksum. Tensor names are left out: Keras numbers a second QAT copy's layers within one
    process (`quantize_layer_1`)."""
    from converters.flatbuffer import read_model

    data = Bundle.load(bundle).model_file("int8").read_bytes()
    model = read_model(data)
    buffers = [bytes(np.asarray(b.data, np.uint8)) if b.data is not None else b"" for b in model.buffers]
    scales = [(tuple(np.ravel(t.quantization.scale)), tuple(np.ravel(t.quantization.zeroPoint)))
              if t.quantization is not None and t.quantization.scale is not None else ()
              for subgraph in model.subgraphs for t in subgraph.tensors]
    files = [(i.filename, i.date_time, i.CRC) for i in zipfile.ZipFile(io.BytesIO(data)).infolist()]
    return buffers, scales, files


def test_exporting_a_model_twice_gives_the_same_int8_model(int8_bundle, trained_model, slice_catalogue, tmp_path):
    from converters.export import export_bundle
    from huse_edge._tf import keras
    from huse_edge.recipe import QatConfig

    keras.utils.set_random_seed(12345)  # another state of the random generators, as in another process
    again = tmp_path / "again"
    export_bundle(trained_model, again, ["int8"], slice_catalogue, margin=100.0, qat=QatConfig(products=64),
                  calibration_products=32)
    first, second = _int8_contents(int8_bundle[0]), _int8_contents(again)
    assert len(first[0]) > 100 and first[2]
    assert first == second


def _dropout_rates(model) -> list[float]:
    from huse_edge._tf import keras

    return [layer.rate for layer in model.submodules if isinstance(layer, keras.layers.Dropout)]


def test_the_qat_copy_drops_nothing(trained_model):
    """The QAT fine-tune only adapts trained weights to int8 rounding: every Dropout of the float model is in the
    copy, at rate 0."""
    from converters.qat import quantize_aware

    float_model = ModelDir.load(trained_model).keras_model()
    float_rates = _dropout_rates(float_model)
    assert float_rates and min(float_rates) > 0
    assert _dropout_rates(quantize_aware(float_model)) == [0.0] * len(float_rates)


def test_tampered_bundle_is_refused(int8_bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(int8_bundle[0], copy)
    data = bytearray((copy / "huse_int8.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "huse_int8.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        Bundle.load(copy)
    result = CliRunner().invoke(main, ["classify", str(copy), "--title", "red shirt"])
    assert result.exit_code == 2 and "sha256" in result.output and "Traceback" not in result.output


BACKENDS = [RuntimeOptions("litert"), RuntimeOptions("litert", xnnpack=False), RuntimeOptions("litert-reference"),
            RuntimeOptions("litert-compiled"), RuntimeOptions("tflite-runtime"), RuntimeOptions("tf-lite")]


@pytest.mark.parametrize("options", BACKENDS, ids=lambda o: o.label)
def test_every_backend_agrees_with_the_python_reference(int8_bundle, slice_catalogue, options):
    bundle = Bundle.load(int8_bundle[0])
    from conftest import read_rows

    rows = read_rows(slice_catalogue)[::20]
    images = [slice_catalogue.parent / r["image"] for r in rows]
    titles = [r["title"] for r in rows]
    reference = HuseRuntime(bundle, "int8", RuntimeOptions("litert-reference"))
    try:
        runtime = HuseRuntime(bundle, "int8", options)
    except BackendUnavailable as error:
        pytest.skip(str(error))
    ours = runtime.classify_product(images, titles)
    expected = reference.classify_product(images, titles)
    assert np.array_equal(np.argmax(ours, 1), np.argmax(expected, 1))
    # The same integer graph: embeddings a few output grids apart at most (a per-tower decision may flip on a tie).
    embeddings = {"embed_image": (runtime.embed_image(images), reference.embed_image(images)),
                  "embed_text": (runtime.embed_text(titles), reference.embed_text(titles))}
    for signature, (got, want) in embeddings.items():
        tolerance = step_tolerances(bundle.model_file("int8", signature))["embedding"]
        assert 0 < tolerance < 0.05 and np.max(np.abs(got - want)) <= 4 * tolerance, signature
        assert np.min(row_cosines(got, want)) > 0.99


@pytest.mark.parametrize("variant", ["float", "int8"])
def test_gpu_accelerator_agrees_with_the_cpu_or_says_why_it_cannot_run(int8_bundle, slice_catalogue, variant):
    """LiteRT's GPU accelerator (WebGPU; Vulkan on Linux) takes the ops it supports and leaves the rest (the L2
    normalisations, the token lookup) to the CPU. It computes in float16, int8 files included (it dequantises their
    weights), so it is held to the float file on the CPU as it was on an NVIDIA H200 over 1,000 real test products:
    embedding cosine >= 0.9999 for the float file (0.999 here), and for the int8 file at most 0.01 below the CPU int8
    kernels' (0.9813 against 0.9802 there); fused decisions equal to the CPU's on all. Without a GPU, the skip reason
    must name the cause, not LiteRT's source lines."""
    bundle = Bundle.load(int8_bundle[0])
    try:
        gpu = HuseRuntime(bundle, variant, RuntimeOptions("litert-compiled", accelerator="gpu"))
    except BackendUnavailable as error:
        assert str(error).startswith("litert-compiled:gpu: ") and "WebGPU" in str(error), error
        assert ".cc:" not in str(error) and ".h:" not in str(error), error
        pytest.skip(str(error))
    from conftest import read_rows

    rows = read_rows(slice_catalogue)[::10]
    images = [slice_catalogue.parent / r["image"] for r in rows]
    titles = [r["title"] for r in rows]
    cpu, float_cpu = HuseRuntime(bundle, variant), HuseRuntime(bundle, "float")
    same = np.argmax(gpu.classify_product(images, titles), 1) == np.argmax(cpu.classify_product(images, titles), 1)
    assert np.mean(same) >= 0.95

    def worst_cosine(runtime: HuseRuntime) -> float:
        pairs = ((runtime.embed_image(images), float_cpu.embed_image(images)),
                 (runtime.embed_text(titles), float_cpu.embed_text(titles)))
        return min(float(np.min(row_cosines(a, b))) for a, b in pairs)

    assert worst_cosine(gpu) >= (0.999 if variant == "float" else worst_cosine(cpu) - 0.01)


def test_tolerance_is_read_from_the_quantisation_tail(int8_bundle):
    bundle = Bundle.load(int8_bundle[0])
    grids = output_grids(bundle.model_file("int8", "embed_text"))["embedding"]
    # int8 L2_NORMALIZATION writes a fixed 1/128 grid; the output's own scale comes first on the way back.
    assert grids[-1] == 1 / 128 and len(grids) >= 2
    assert output_grids(bundle.model_file("float", "embed_text"))["embedding"] == []


@pytest.mark.parametrize("library, reason", [
    ("libedgetpu.so.1", "cannot be loaded"),  # not on this machine: searched by name, as a user would pass it
    ("README.md", "cannot be loaded"),  # not a shared library
    (ctypes.util.find_library("m"), "not a TFLite external delegate"),  # a library without the interface
])
def test_an_unusable_delegate_is_reported_without_a_traceback(int8_bundle, monkeypatch, library, reason):
    bundle = Bundle.load(int8_bundle[0])
    path = str(Path(__file__).parents[1] / library) if library.endswith(".md") else library
    finaliser_errors = []
    monkeypatch.setattr(sys, "unraisablehook", finaliser_errors.append)
    for backend in ("litert", "tflite-runtime"):
        with pytest.raises(BackendUnavailable, match=f"delegate {re.escape(path)}: {reason}"):
            HuseRuntime(bundle, "int8", RuntimeOptions(backend, delegate=path))
        gc.collect()
    assert finaliser_errors == []


def test_classify_command(int8_bundle, slice_catalogue):
    from conftest import read_rows

    row = read_rows(slice_catalogue)[0]
    result = CliRunner().invoke(main, ["classify", str(int8_bundle[0]), "--image",
                                       str(slice_catalogue.parent / row["image"]), "--title", row["title"],
                                       "--json", "--top-k", "3"])
    assert result.exit_code == 0, result.output
    top = json.loads(result.stdout)
    assert 1 <= len(top) <= 3 and top[0]["path"][-1] == row["article_type"]
    assert all(a["score"] >= b["score"] > 0 for a, b in zip(top, top[1:]))


def test_top_k_leaves_out_classes_of_probability_zero(int8_bundle):
    # what an int8 softmax gives a confident prediction: most classes read exactly 0, and ranking those ties
    # would list the first classes in label order as if they were guesses
    runtime = HuseRuntime(Bundle.load(int8_bundle[0]), "int8")
    probabilities = np.zeros((2, len(runtime.bundle.hierarchy)), np.float32)
    probabilities[0, [2, 1]] = [0.75, 0.25]
    probabilities[1, :] = 1 / probabilities.shape[1]
    sure, unsure = runtime.top_k(probabilities, 5)
    assert [(t["class_id"], t["score"]) for t in sure] == [(2, 0.75), (1, 0.25)]
    assert [t["class_id"] for t in unsure] == [0, 1, 2, 3, 4]  # equal non-zero probabilities: label order


def test_benchmark_measures_every_signature_and_refuses_what_does_not_exist(int8_bundle, tmp_path):
    bundle = str(int8_bundle[0])
    result = CliRunner().invoke(main, ["benchmark", bundle, "--variant", "int8", "--backend", "litert",
                                       "--threads", "1", "--runs", "3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["unavailable"] == [] and len(report["results"]) == 1
    figures = report["results"][0]["signatures"]
    assert set(figures) == {"embed_image", "embed_text", "classify", "classify_product", "end_to_end_classify"}
    assert all(0 < s["p50_ms"] <= s["p99_ms"] for s in figures.values()) and figures["embed_image"]["macs"] > 0

    (tmp_path / "photo.jpg").write_bytes(b"not a jpeg")
    for options, message in ((["--variant", "fp16"], "no 'fp16' model"), (["--backend", "litrt"], "unknown backend"),
                             (["--image", str(tmp_path / "photo.jpg")], "cannot decode image")):
        result = CliRunner().invoke(main, ["benchmark", bundle, "--runs", "3", *options])
        assert result.exit_code == 2 and message in result.output and "p50" not in result.output, result.output


@pytest.mark.parametrize("command, option, value", [
    ("classify", "--title", ""), ("classify", "--title", "!!! ???"), ("search", "--text", ""),
    ("search", "--text", "!!! ???"),  # no tokens: the text tower would embed padding
    ("classify", "--top-k", "0"), ("search", "--top-k", "0"), ("benchmark", "--threads", "0"),
    ("benchmark", "--runs", "0"), ("benchmark", "--batch", "0"), ("verify", "--threads", "0"),
])
def test_edge_commands_refuse_an_option_value_they_cannot_use(command, option, value, tmp_path):
    result = CliRunner().invoke(main, [command, str(tmp_path), option, value])
    assert result.exit_code == 2 and option in result.output and "Traceback" not in result.output, result.output


def test_export_refuses_when_parity_margin_is_exceeded(trained_model, slice_catalogue, tmp_path):
    out = tmp_path / "refused"
    result = CliRunner().invoke(main, ["export", str(trained_model), "--out", str(out), "--catalogue",
                                       str(slice_catalogue), "--int8", "--margin", "-100", "--qat-products", "32"])
    assert result.exit_code == 3 and "nothing was written" in result.output
    assert not out.exists() and not list(tmp_path.glob(".refused*"))


@pytest.mark.parametrize("option", ["--qat-epochs", "--qat-products", "--qat-learning-rate", "--parity-products"])
def test_export_refuses_a_zero_qat_or_parity_setting_before_any_work(trained_model, tmp_path, option):
    out = tmp_path / "bundle"
    result = CliRunner().invoke(main, ["export", str(trained_model), "--out", str(out), "--int8", option, "0"])
    assert result.exit_code == 2 and option in result.output and "Traceback" not in result.output, result.output
    assert not out.exists()


def _verify(bundle, catalogue, model, tmp_path):
    report = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["verify", str(bundle), str(catalogue), "--model-dir", str(model), "--split",
                                       "all", "--max-products", "48", "--min-agreement", "0.9", "--max-drop", "5",
                                       "--max-modality-drop", "5", "--report", str(report), "--json"])
    return result, report


def test_verify_passes_on_every_installed_backend(int8_bundle, trained_model, slice_catalogue, tmp_path):
    result, report = _verify(int8_bundle[0], slice_catalogue, trained_model, tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    statuses = {b["backend"]: b["status"] for b in summary["backends"]}
    assert statuses["litert"] == statuses["litert-reference"] == statuses["litert-compiled:cpu"] == "pass"
    assert statuses["tflite-runtime"] == "pass"  # served from its own process next to TensorFlow
    litert = next(b for b in summary["backends"] if b["backend"] == "litert")
    assert litert["image_embedding_cosine_mean"] > 0.98 and litert["latency_p50_ms"] > 0
    page = report.read_text()
    assert "PASS" in page and "fused ECE" in page and page.count("<svg") >= 3
    assert 'src="http' not in page and "<script" not in page


def test_verify_fails_on_a_wrong_quantisation_scale(int8_bundle, trained_model, slice_catalogue, tmp_path):
    from converters.flatbuffer import read_model, write_model
    from huse_edge.bundle import MANIFEST, sha256_of

    broken = tmp_path / "broken"
    shutil.copytree(int8_bundle[0], broken)
    path = broken / "huse_int8.tflite"
    model = read_model(path.read_bytes())
    classes = len(Bundle.load(int8_bundle[0]).hierarchy)
    changed = 0
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            scales = tensor.quantization.scale if tensor.quantization is not None else None
            # the shared classifier's per-class weight scales, alternately 4x too small and 4x too large: odd
            # classes alone 4x larger left every decision of a confident model unchanged (wrong classes' logits
            # are mostly negative, and grow more negative)
            if scales is not None and len(scales) == classes:
                tensor.quantization.scale = [s * (4.0 if i % 2 else 0.25) for i, s in enumerate(scales)]
                changed += 1
    assert changed
    path.write_bytes(write_model(model))
    manifest = json.loads((broken / MANIFEST).read_text())
    manifest["files"]["huse_int8.tflite"] = sha256_of(path)  # a consistent, but wrong, bundle
    (broken / MANIFEST).write_text(json.dumps(manifest))
    result, report = _verify(broken, slice_catalogue, trained_model, tmp_path)
    assert result.exit_code == 1, result.output
    assert "fused top-1" in result.output and "FAIL" in report.read_text()
