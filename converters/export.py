"""`huse-edge export`: trained model directory -> verified edge bundle.

Order of work: convert every requested variant (QAT fine-tune first for `int8`), write the bundle into a
temporary directory, measure parity on the validation split with the real TFLite runtime, refuse (nothing
written) when the int8 model falls more than `margin` points of fused top-1 behind the float Keras model, and
only then rename the bundle into place.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from converters.metadata import LABELS_FILE, VOCAB_FILE, ModelDescription, with_metadata
from converters.qat import calibrate_ranges, quantize_aware
from converters.tflite import SIGNATURES, convert, representative_dataset
from huse_edge import __version__
from huse_edge._tf import keras, tf
from huse_edge.atomic import atomic_path, check_destination
from huse_edge.bundle import FORMAT_VERSION, MANIFEST, Bundle, sha256_of
from huse_edge.catalogue import Product
from huse_edge.evaluation_job import labelled_split, model_inputs
from huse_edge.loss import HuseLoss
from huse_edge.model_dir import MODEL_FILE, ModelDir
from huse_edge.recipe import LossWeights, QatConfig
from huse_edge.runtime import HuseRuntime, RuntimeOptions
from huse_edge.train import HuseTrainer, predict_outputs, training_batches
from huse_edge.tokenizer import __doc__ as TOKENIZER_SPEC
from huse_edge.transform import SPEC_VERSION as PREPROCESSING_VERSION, __doc__ as TRANSFORM_SPEC


class ExportRefused(RuntimeError):
    """The quantised model is not accurate enough to ship."""


def qat_finetune(float_model: keras.Model, model_dir: ModelDir, products: Sequence[Product], labels: np.ndarray,
                 config: QatConfig,
                 seed: int = 0) -> keras.Model:
    """QAT copy of the model (no dropout: see `converters.qat`), fine-tuned on the same three HUSE losses as
    training. Its batch order is seeded, so that exporting the same model twice gives the same int8 file."""
    keras.utils.set_random_seed(seed)
    qat = quantize_aware(float_model)
    images, tokens = model_inputs(model_dir, products)
    batch_size = config.batch_size
    calibrate_ranges(qat, float_model, [[images[i: i + batch_size].astype(np.float32), tokens[i: i + batch_size]]
                           for i in range(0, min(len(tokens), 256), batch_size)])
    data = training_batches(images, tokens, np.asarray(labels), batch_size, shuffle=True, seed=seed)
    trainer = HuseTrainer(qat, HuseLoss(model_dir.class_distances, LossWeights(**model_dir.config["loss"])))
    trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    start = time.perf_counter()
    trainer.fit(data, epochs=config.epochs, verbose=2)
    print(f"qat: {len(labels) * config.epochs / (time.perf_counter() - start):.1f} products/s")
    return qat


def _fused_top1(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def export_bundle(model_dir_path: str | Path, out: str | Path, variants: list[str], catalogue: str | Path,
                  margin: float = 1.0, force: bool = False, qat: QatConfig = QatConfig(),
                  calibration_products: int = 300, parity_products: int | None = None) -> dict:
    model_dir = ModelDir.load(model_dir_path)
    check_destination(out, MANIFEST)  # before minutes of conversion
    float_model = model_dir.keras_model()
    labelled = labelled_split(model_dir, catalogue, "all")  # read and checked once: 9-13 s for the default catalogue
    train_part, val_part = labelled.split("train"), labelled.split("val")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(train_part.products))
    calibration = [train_part.products[i] for i in order[:calibration_products]]
    calib_images, calib_tokens = model_inputs(model_dir, calibration)
    calib_outputs = predict_outputs(float_model, calib_images, calib_tokens)
    data = representative_dataset(calib_images, calib_tokens, calib_outputs["image_embedding"],
                                  calib_outputs["text_embedding"])

    from_float = [v for v in variants if v != "int8"]
    print(f"export: converting {', '.join(variants)}")
    models = convert(float_model, from_float, data) if from_float else {}
    if "int8" in variants:
        chosen = order[:qat.products]
        qat_model = qat_finetune(float_model, model_dir, [train_part.products[i] for i in chosen],
                                 [train_part.labels[i] for i in chosen], qat)
        models.update(convert(qat_model, ["int8"], data))
    models = {variant: models[variant] for variant in variants}

    parity_set = val_part.products[:parity_products] if parity_products else val_part.products
    parity_labels = np.asarray(val_part.labels[: len(parity_set)])
    out = Path(out)
    with atomic_path(out, MANIFEST) as tmp:
        _write_bundle(tmp, model_dir, models)
        images, tokens = model_inputs(model_dir, parity_set)
        reference = predict_outputs(float_model, images, tokens)
        parity = {"split": "val", "products": len(parity_set),
                  "keras_float_fused_top1": _fused_top1(reference["fused_probabilities"], parity_labels)}
        bundle = Bundle.load(tmp)
        for variant in variants:
            runtime = HuseRuntime(bundle, variant, RuntimeOptions("litert"))
            probabilities = np.concatenate([runtime.classify_product(images[i: i + 64], tokens[i: i + 64])
                                            for i in range(0, len(tokens), 64)])
            parity[variant] = {
                "fused_top1": _fused_top1(probabilities, parity_labels),
                "agreement_with_float": float(np.mean(np.argmax(probabilities, 1)
                                                      == np.argmax(reference["fused_probabilities"], 1))),
                "size_bytes": bundle.model_file(variant).stat().st_size,
            }
            print(f"export: {variant}: fused top-1 {parity[variant]['fused_top1']:.4f} "
                  f"(Keras float {parity['keras_float_fused_top1']:.4f}), "
                  f"{parity[variant]['size_bytes'] / 1e6:.2f} MB")
        for variant in ("int8", "ptq_int8"):
            drop = 100 * (parity["keras_float_fused_top1"] - parity.get(variant, {}).get("fused_top1", 1.0))
            if variant in parity and drop > margin and not force:
                raise ExportRefused(f"{variant} fused top-1 is {drop:.2f} points below the float model "
                                    f"(margin {margin}); nothing was written. Use --force to export anyway.")
        manifest = json.loads((tmp / MANIFEST).read_text())
        manifest["parity"] = parity
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return parity


def signature_io(model_path: Path) -> dict:
    """Per signature, each input and output: dtype, batch-1 shape, scale and zero point. Runtimes whose API does
    not expose quantisation (LiteRT's Kotlin CompiledModel) read them from the manifest instead."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))

    def describe(details: dict) -> dict:
        scale, zero_point = details["quantization"]
        return {"dtype": np.dtype(details["dtype"]).name, "shape": [int(d) for d in details["shape"]],
                "scale": float(scale), "zero_point": int(zero_point)}

    io = {}
    for name in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(name)
        io[name] = {"inputs": {k: describe(v) for k, v in runner.get_input_details().items()},
                    "outputs": {k: describe(v) for k, v in runner.get_output_details().items()}}
    return io


def _model_description(directory: Path, model_dir: ModelDir) -> ModelDescription:
    """What the TFLite metadata of every model file says (see `converters.metadata`); `_write_bundle` adds the
    variant to the name."""
    config = model_dir.model_config
    return ModelDescription(
        name="HUSE product embeddings and classifier",
        description=f"Hierarchical Universal Semantic Embeddings (arXiv 1911.05978) trained by huse-edge: image "
                    f"and text towers into one embedding space and a shared classification layer over "
                    f"{len(model_dir.hierarchy)} product classes.",
        version=__version__, image_height=config.image_height, image_width=config.image_width,
        embedding_dim=config.embedding_dim, num_classes=len(model_dir.hierarchy),
        max_length=model_dir.tokenizer.spec.max_length, tokenizer_rules=TOKENIZER_SPEC.strip(),
        labels=(directory / LABELS_FILE).read_bytes(), vocab=(directory / VOCAB_FILE).read_bytes())


def _write_bundle(directory: Path, model_dir: ModelDir, models: dict[str, dict[str, bytes]]) -> None:
    directory.mkdir(parents=True)
    config = model_dir.model_config
    model_dir.hierarchy.save(directory / "labels.txt")
    model_dir.tokenizer.save(directory)
    preprocessing = {"height": config.image_height, "width": config.image_width, "channels": "RGB",
                     "input": "pixel values 0..255 (uint8 in int8 models, float32 otherwise), NHWC",
                     "normalisation": "inside the model", "version": PREPROCESSING_VERSION,
                     "spec": TRANSFORM_SPEC.strip()}
    (directory / "preprocessing.json").write_text(json.dumps(preprocessing, indent=2) + "\n")
    variants = {}
    description = _model_description(directory, model_dir)
    for variant, files in models.items():
        (directory / variant).mkdir()
        about = replace(description, name=f"{description.name} ({variant})")
        (directory / f"huse_{variant}.tflite").write_bytes(with_metadata(files["all"], about))
        for name in SIGNATURES:
            (directory / variant / f"{name}.tflite").write_bytes(with_metadata(files[name], about))
        variants[variant] = {"model": f"huse_{variant}.tflite",
                             "signatures": {name: f"{variant}/{name}.tflite" for name in SIGNATURES},
                             "io": signature_io(directory / f"huse_{variant}.tflite")}
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    manifest = {
        "format_version": FORMAT_VERSION, "huse_edge_version": __version__, "tensorflow_version": tf.__version__,
        "python": platform.python_version(), "num_classes": len(model_dir.hierarchy),
        "vocab_size": len(model_dir.tokenizer), "embedding_dim": config.embedding_dim,
        "fusion_image_weight": config.fusion_image_weight,
        "signatures": list(SIGNATURES), "variants": variants, "source_model_dir": str(model_dir.path.resolve()),
        "source_model_sha256": sha256_of(model_dir.path / MODEL_FILE),
        "files": {str(p.relative_to(directory)): sha256_of(p) for p in files},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
