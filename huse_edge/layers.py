"""Small registered Keras layers used by the HUSE towers.

Registered custom layers (not `Lambda`) so that saved models load with `safe_mode=True` and so that
quantization-aware training can give each one an explicit QuantizeConfig.
"""

from __future__ import annotations

from huse_edge._tf import keras, tf

_PACKAGE = "huse_edge"


@keras.utils.register_keras_serializable(package=_PACKAGE)
class L2Normalize(keras.layers.Layer):
    """Projects embeddings onto the unit sphere, so dot products are cosine similarities."""

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        # tf.math.l2_normalize becomes TFLite's L2_NORMALIZATION op, which has an int8 kernel.
        return tf.math.l2_normalize(inputs, axis=-1, epsilon=self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.utils.register_keras_serializable(package=_PACKAGE)
class MeanProbabilities(keras.layers.Layer):
    """Late fusion: the mean of the per-modality class probabilities (softmax of each tower's logits)."""

    def call(self, inputs):
        return tf.add_n([tf.nn.softmax(logits, axis=-1) for logits in inputs]) / float(len(inputs))
