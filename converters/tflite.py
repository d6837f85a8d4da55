"""Keras HUSE model -> TFLite, one multi-signature file per variant plus one file per signature cut out of it.

Signatures (inputs -> outputs):
- `embed_image`: image (N, H, W, 3) pixels 0..255 -> embedding (N, D)
- `embed_text`: tokens (N, L) int32 -> embedding (N, D)
- `classify`: embedding (N, D) -> probabilities (N, K) (softmax of the shared layer)
- `classify_product`: image + tokens -> probabilities (N, K) (the model's late fusion, `layers.FusedProbabilities`)
Full-int8 variants take the image as uint8 (scale ~1: raw pixels), tokens as int32, and return int8 outputs whose
scale and zero point are in the model; the runtime dequantises them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from converters.flatbuffer import read_model, signature_model, write_model
from huse_edge._tf import keras, tf
from huse_edge.model import as_output_dict

VARIANTS = ("float", "fp16", "dynamic", "ptq_int8", "int8")
SIGNATURES = ("embed_image", "embed_text", "classify", "classify_product")


def _find_layer(model: keras.Model, name: str) -> keras.layers.Layer:
    """A layer by name, also inside a QAT model where it is wrapped as `quant_<name>`."""
    for layer in model.layers:
        if layer.name in (name, f"quant_{name}"):
            return layer
    raise KeyError(f"model has no layer {name!r}")


class HuseSignatures:
    """The four exported entry points around one (float or QAT) Keras model. A plain object, not a `tf.Module`:
    what gets saved is `saved_root`, which tracks the model's variables only (see there)."""

    def __init__(self, model: keras.Model):
        self.model = model
        _, height, width, _ = model.inputs[0].shape
        length = model.inputs[1].shape[1]
        dim = as_output_dict(model.output)["image_embedding"].shape[-1]
        self.scale = _find_layer(model, "logit_scale")
        self.dense = _find_layer(model, "shared_classifier")
        image = tf.TensorSpec([None, height, width, 3], tf.float32, name="image")
        tokens = tf.TensorSpec([None, length], tf.int32, name="tokens")
        embedding = tf.TensorSpec([None, dim], tf.float32, name="embedding")
        self.embed_image = tf.function(self._embed_image, input_signature=[image])
        self.embed_text = tf.function(self._embed_text, input_signature=[tokens])
        self.classify = tf.function(self._classify, input_signature=[embedding])
        self.classify_product = tf.function(self._classify_product, input_signature=[image, tokens])
        self.length = length

    def _run(self, image, tokens):
        return as_output_dict(self.model([image, tokens], training=False))

    def _embed_image(self, image):
        tokens = tf.zeros([tf.shape(image)[0], self.length], tf.int32)
        return {"embedding": self._run(image, tokens)["image_embedding"]}

    def _embed_text(self, tokens):
        image = tf.zeros([tf.shape(tokens)[0], *self.model.inputs[0].shape[1:]], tf.float32)
        return {"embedding": self._run(image, tokens)["text_embedding"]}

    def _classify(self, embedding):
        return {"probabilities": tf.nn.softmax(self.dense(self.scale(embedding)), axis=-1)}

    def _classify_product(self, image, tokens):
        return {"probabilities": self._run(image, tokens)["fused_probabilities"]}

    def signatures(self) -> dict:
        return {name: getattr(self, name).get_concrete_function() for name in SIGNATURES}

    def saved_root(self) -> tf.Module:
        """The object to save with `signatures()`: it holds the variables those functions capture and nothing
        else. Saving the Keras model itself would also trace and store every layer's own call functions, most of
        the time of a save and of the converter's load (70 of the 83 s of converting the test slice's QAT model),
        for functions the converter never reads."""
        root = tf.Module()
        root.model_variables = list(self.model.variables)
        return root


RepresentativeData = Callable[[], Iterable[tuple[str, dict[str, np.ndarray]]]]


def representative_dataset(images: np.ndarray, tokens: np.ndarray, image_embeddings: np.ndarray,
                           text_embeddings: np.ndarray) -> RepresentativeData:
    """Calibration samples for every signature: product photos, their titles and both towers' embeddings
    (`classify` serves either tower, so it is calibrated on both)."""

    def generate():
        for i in range(len(tokens)):
            image, token = images[i: i + 1].astype(np.float32), tokens[i: i + 1].astype(np.int32)
            yield "embed_image", {"image": image}
            yield "embed_text", {"tokens": token}
            for embeddings in (image_embeddings, text_embeddings):
                yield "classify", {"embedding": embeddings[i: i + 1].astype(np.float32)}
            yield "classify_product", {"image": image, "tokens": token}

    return generate


def _converter(saved_model: Path, variant: str, data: RepresentativeData | None):
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=list(SIGNATURES))
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant in ("ptq_int8", "int8"):
        if data is None:
            raise ValueError(f"{variant} conversion needs a representative dataset")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = data
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8
    return converter


def convert(model: keras.Model, variants: Sequence[str],
            data: RepresentativeData | None = None) -> dict[str, dict[str, bytes]]:
    """Per variant, `{"all": multi-signature model, "<signature>": single-signature model}` as flatbuffer bytes:
    the converter's multi-signature model, and each signature cut out of it (the bundle writes them all through
    `metadata.with_metadata`, which also shares quantisation tables). The model is traced and saved once for all
    the variants."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant {unknown[0]!r}")
    signatures = HuseSignatures(model)
    models = {}
    with tempfile.TemporaryDirectory(prefix="huse-savedmodel-") as tmp:
        saved = Path(tmp) / "saved_model"
        tf.saved_model.save(signatures.saved_root(), str(saved), signatures=signatures.signatures())
        for variant in variants:
            combined = _converter(saved, variant, data).convert()
            parsed = read_model(combined)
            models[variant] = {"all": combined,
                               **{name: write_model(signature_model(parsed, name)) for name in SIGNATURES}}
    return models
