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
class FusedProbabilities(keras.layers.Layer):
    """Late fusion: softmax of the weighted mean of the image and text logits, i.e. the weighted geometric mean
    of the two towers' class probabilities, renormalised (a product of experts: each modality is independent
    evidence, so their likelihoods multiply). It is also the classification of the fused embedding
    `w * image + (1 - w) * text` that retrieval uses, up to its normalisation, since the shared layer is linear.
    It beat the weighted mean of probabilities on validation and test (README, Model).

    The towers are not equally reliable (on catalogue titles the text tower is much stronger), so the image weight
    is chosen on the validation split after training (`evaluate.best_fusion_weight`); 0.5 is the plain mean."""

    def __init__(self, image_weight: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.image_weight = float(image_weight)

    def call(self, inputs):
        image_logits, text_logits = inputs
        return tf.nn.softmax(self.image_weight * image_logits + (1.0 - self.image_weight) * text_logits, axis=-1)

    def get_config(self):
        return {**super().get_config(), "image_weight": self.image_weight}
