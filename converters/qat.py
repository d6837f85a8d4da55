"""Quantization-aware training of the whole HUSE inference graph with tensorflow-model-optimization.

Annotation rules (what the default `quantize_model` cannot do on its own):
- layers the default 8-bit registry knows (Conv2D/DepthwiseConv2D, Dense, ReLU6, Add, pooling, Dropout) and
  BatchNormalization (not in the registry, but the Conv+BN(+ReLU) transforms fold it only when it is annotated)
  get the default configuration;
- weightless HUSE layers whose output range matters (L2 normalisation, the logit scale, the pixel
  normalisation, the late fusion) get `OutputQuantizeConfig`: only their output is fake-quantised;
- the token `Embedding` is left unannotated: its int32 input must never reach a FakeQuant op (the converter
  still quantises its table and calibrates its output from the representative dataset);
- `DepthwiseConv2D` and its BatchNorm get no fake-quant at all (`FloatQuantizeConfig`): TFMOT quantises the
  depthwise output *before* BatchNorm with one range for all channels, and its conv weight quantizer is per
  *last* axis, which for a depthwise kernel (kh, kw, C, 1) is one scale for all channels; together they cut the
  EfficientNet image tower's embedding cosine to float to 0.85. The converter quantises depthwise weights per
  channel itself, and the ReLU6 after each depthwise block carries the activation range.
- `Dropout` is copied at rate 0: the copy is fine-tuned only to adapt trained weights to int8 rounding, and
  dropout's noise moved the int8 model away from the float one (benchmarks/EXPERIMENTS.md, "Dropout in the QAT
  fine-tune").
The shared classifier is one layer called twice, and stays one (shared) quantised layer.

TFMOT starts every activation range at [-6, 6] and moves it by an exponential moving average with decay 0.999,
so a fine-tune of a few hundred steps would ship ranges near +-6 (an L2-normalised embedding would use a sixth of
the int8 levels). `calibrate_ranges` therefore sets each activation range to what its tensor really spans on
calibration data (measured on the float model) before QAT starts; training then refines them.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from huse_edge._tf import keras, tf
from huse_edge.layers import FusedProbabilities, L2Normalize
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


class FloatQuantizeConfig(OutputQuantizeConfig):
    """No fake-quant at all: for depthwise convolutions and their BatchNorm, which TFLite fuses with the following
    ReLU6 into one op whose only quantised tensor is the ReLU6 output (see the module docstring)."""

    def get_output_quantizers(self, layer):
        return []


def _after_depthwise(model: keras.Model) -> set[str]:
    return {layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
            and isinstance(layer._inbound_nodes[0].inbound_layers, keras.layers.DepthwiseConv2D)}


def _annotator(model: keras.Model):
    folded_into_depthwise = _after_depthwise(model)

    def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, (L2Normalize, FusedProbabilities, keras.layers.Rescaling)):
            return quantization.quantize_annotate_layer(layer, OutputQuantizeConfig())
        if isinstance(layer, keras.layers.Dropout):
            no_dropout = {**layer.get_config(), "rate": 0.0}
            return quantization.quantize_annotate_layer(keras.layers.Dropout.from_config(no_dropout))
        if layer.name in folded_into_depthwise or isinstance(layer, keras.layers.DepthwiseConv2D):
            return quantization.quantize_annotate_layer(layer, FloatQuantizeConfig())
        if _registry.supports(layer) or isinstance(layer, keras.layers.BatchNormalization):
            # BatchNorm is not in the registry, but must be annotated for the Conv+BN(+ReLU) transforms to fold it.
            return quantization.quantize_annotate_layer(layer)
        # A fresh copy, as clone_model makes by default: returning `layer` would share it with the float model.
        return layer.__class__.from_config(layer.get_config())

    return annotate


def list_outputs(model: keras.Model) -> keras.Model:
    """The same graph with its outputs as a list in `OUTPUTS` order (TFMOT clones list outputs reliably)."""
    outputs = model.output
    return keras.Model(model.inputs, [outputs[k] for k in OUTPUTS], name=model.name)


def quantize_aware(model: keras.Model) -> keras.Model:
    """A QAT copy of the inference model (same weights, fake-quant ops inserted, BatchNorm folded, no dropout)."""
    annotated = keras.models.clone_model(list_outputs(model), clone_function=_annotator(model))
    annotated.set_weights(list_outputs(model).get_weights())
    with quantization.quantize_scope({"OutputQuantizeConfig": OutputQuantizeConfig, "L2Normalize": L2Normalize,
                                      "FloatQuantizeConfig": FloatQuantizeConfig,
                                      "FusedProbabilities": FusedProbabilities}):
        return quantization.quantize_apply(annotated)


_ACTIVATION_RANGE = re.compile(r"(output|post_activation|pre_activation|quantize_layer)_(min|max):")


def _range_variables(layer: keras.layers.Layer) -> list[tf.Variable]:
    return [v for v in layer.non_trainable_weights if _ACTIVATION_RANGE.search(v.name)]


def calibrate_ranges(qat: keras.Model, float_model: keras.Model, batches: Sequence[list[np.ndarray]]) -> None:
    """Sets each activation range of a QAT model to the min/max (0 included) of the same tensor in the float
    model on `batches`. Measured on the float model, because a QAT tensor is already clipped to its current range.
    QAT layer `quant_<name>` wraps float layer `<name>`; a QuantizeLayer quantises the input layer it follows."""
    targets: list[tuple[keras.layers.Layer, list]] = []
    for layer in qat.layers:
        if not _range_variables(layer):
            continue
        if isinstance(layer, quantization.QuantizeWrapperV2):
            name = layer.name.removeprefix("quant_")
        else:  # the QuantizeLayer TFMOT puts after an input
            name = layer._inbound_nodes[0].inbound_layers.name
        source = float_model.get_layer(name)
        targets.append((layer, [source.get_output_at(i) for i in range(max(1, len(source._inbound_nodes)))]))
    probe = keras.Model(float_model.inputs, [t for _, tensors in targets for t in tensors])
    low = np.zeros(len(targets))
    high = np.zeros(len(targets))
    for batch in batches:
        values = iter(probe(batch, training=False))
        for i, (_, tensors) in enumerate(targets):
            for value in [next(values) for _ in tensors]:
                low[i] = min(low[i], float(tf.reduce_min(value)))
                high[i] = max(high[i], float(tf.reduce_max(value)))
    for i, (layer, _) in enumerate(targets):
        for variable in _range_variables(layer):
            variable.assign(low[i] if "_min:" in variable.name else high[i])
