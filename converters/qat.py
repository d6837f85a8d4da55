"""Quantization-aware training of the whole HUSE inference graph with tensorflow-model-optimization.

Annotation rules (what the default `quantize_model` cannot do on its own):
- layers the default 8-bit registry knows (Conv2D/DepthwiseConv2D + BatchNorm, which it folds; Dense, ReLU6, Add,
  pooling, Dropout) get the default configuration;
- weightless HUSE layers whose output range matters (L2 normalisation, the logit scale, the pixel
  normalisation, the late-fusion mean) get `OutputQuantizeConfig`: only their output is fake-quantised;
- the token `Embedding` is left unannotated: its int32 input must never reach a FakeQuant op (the converter
  still quantises its table and calibrates its output from the representative dataset).
The shared classifier is one layer called twice, and stays one (shared) quantised layer.
"""

from __future__ import annotations

from huse_edge._tf import keras
from huse_edge.layers import L2Normalize, MeanProbabilities
from huse_edge.model import OUTPUTS

import tensorflow_model_optimization as tfmot  # noqa: E402  (after huse_edge._tf set the Keras version)

quantization = tfmot.quantization.keras
_registry = quantization.default_8bit.Default8BitQuantizeRegistry()


class OutputQuantizeConfig(quantization.QuantizeConfig):
    """Fake-quantise only a layer's output, with an 8-bit moving-average range."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [quantization.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


def _annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
    if isinstance(layer, (L2Normalize, MeanProbabilities, keras.layers.Rescaling)):
        return quantization.quantize_annotate_layer(layer, OutputQuantizeConfig())
    if isinstance(layer, (keras.layers.Embedding, keras.layers.InputLayer)):
        return layer
    if _registry.supports(layer):
        return quantization.quantize_annotate_layer(layer)
    return layer


def list_outputs(model: keras.Model) -> keras.Model:
    """The same graph with its outputs as a list in `OUTPUTS` order (TFMOT clones list outputs reliably)."""
    outputs = model.output
    return keras.Model(model.inputs, [outputs[k] for k in OUTPUTS], name=model.name)


def quantize_aware(model: keras.Model) -> keras.Model:
    """A QAT copy of the inference model (same weights, fake-quant ops inserted, BatchNorm folded)."""
    annotated = keras.models.clone_model(list_outputs(model), clone_function=_annotate)
    annotated.set_weights(list_outputs(model).get_weights())
    with quantization.quantize_scope({"OutputQuantizeConfig": OutputQuantizeConfig, "L2Normalize": L2Normalize,
                                      "MeanProbabilities": MeanProbabilities}):
        return quantization.quantize_apply(annotated)
