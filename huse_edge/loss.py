"""The three HUSE losses (arXiv 1911.05978, section 3.4), computed on L2-normalised embeddings.

- Class level: softmax cross-entropy of the shared classification layer's logits, for each modality.
- Semantic similarity (graph): for all pairs (i, j) of universal embeddings in the batch (image and text
  embeddings pooled together),  (1/N^2) * sum_ij s_ij * (d(u_i, u_j) - A[y_i, y_j])^2  where d is the cosine
  distance, A the class-distance matrix (see `hierarchy`) and s_ij = 1 when A[y_i, y_j] < threshold, else 0:
  only pairs of related classes are pulled to their semantic distance; unrelated ones are left free.
- Cross-modal gap: mean cosine distance between the image and the text embedding of the same product.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from huse_edge._tf import tf

COMPONENTS = ("class_loss", "graph_loss", "gap_loss")


@dataclass(frozen=True)
class LossWeights:
    class_level: float = 1.0
    semantic: float = 1.0
    gap: float = 1.0
    threshold: float = 0.8

    def to_dict(self) -> dict:
        return asdict(self)


def cosine_distance_matrix(embeddings: tf.Tensor) -> tf.Tensor:
    """1 - u_i . u_j for unit-norm rows."""
    return 1.0 - tf.matmul(embeddings, embeddings, transpose_b=True)


def class_level_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def semantic_similarity_loss(embeddings: tf.Tensor, labels: tf.Tensor, class_distances: tf.Tensor,
                             threshold: float) -> tf.Tensor:
    target = tf.gather(tf.gather(class_distances, labels), labels, axis=1)
    mask = tf.cast(target < threshold, embeddings.dtype)
    squared = tf.square(cosine_distance_matrix(embeddings) - target) * mask
    n = tf.cast(tf.shape(embeddings)[0], embeddings.dtype)
    return tf.reduce_sum(squared) / (n * n)


def cross_modal_gap_loss(image_embeddings: tf.Tensor, text_embeddings: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(1.0 - tf.reduce_sum(image_embeddings * text_embeddings, axis=-1))


class HuseLoss:
    """Weighted sum of the three losses; returns every component so each can be logged."""

    def __init__(self, class_distances: np.ndarray, weights: LossWeights = LossWeights()):
        self.class_distances = tf.constant(class_distances, tf.float32)
        self.weights = weights

    def __call__(self, outputs: dict, labels: tf.Tensor) -> dict[str, tf.Tensor]:
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        image, text = outputs["image_embedding"], outputs["text_embedding"]
        parts = {
            "class_loss": 0.5 * (class_level_loss(labels, outputs["image_logits"])
                                 + class_level_loss(labels, outputs["text_logits"])),
            "graph_loss": semantic_similarity_loss(tf.concat([image, text], 0), tf.concat([labels, labels], 0),
                                                   self.class_distances, self.weights.threshold),
            "gap_loss": cross_modal_gap_loss(image, text),
        }
        parts["loss"] = (self.weights.class_level * parts["class_loss"] + self.weights.semantic * parts["graph_loss"]
                         + self.weights.gap * parts["gap_loss"])
        return parts
