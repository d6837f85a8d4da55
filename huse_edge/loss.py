"""The three HUSE losses (arXiv 1911.05978, section 3.4), computed on L2-normalised embeddings.

- Class level: softmax cross-entropy of the shared classification layer's logits, for each modality.
- Semantic similarity (graph): for all pairs (i, j) of universal embeddings in the batch (image and text
  embeddings pooled together),  (1/N^2) * sum_ij s_ij * (d(u_i, u_j) - A[y_i, y_j])^2  where d is the cosine
  distance, A the class-distance matrix (see `hierarchy`) and s_ij = 1 when A[y_i, y_j] < threshold, else 0:
  only pairs of related classes are pulled to their semantic distance; unrelated ones are left free.
- Cross-modal gap: mean cosine distance between the image and the text embedding of the same product.

Beyond the paper, optionally (`LossWeights.fused`): the cross-entropy of the towers' fused logits, the mean of the
two, which is the late fusion at equal weights. The class-level loss trains each tower alone, while the product
is classified by their fusion; this term trains that decision, so that one tower can make up for the other. It is
logged whatever its weight.

Under a tf.distribute strategy with several replicas in sync, every loss is still the loss of the *global* batch:
each replica returns its share (its examples' sums over the global example count; for the graph loss, the pairs
of its embeddings with the embeddings of every replica, gathered with their gradient), the shares sum to the
global loss, and the optimizer sums the replicas' gradients. A per-replica mean of the graph loss would silently
drop every pair that straddles two replicas.
"""

from __future__ import annotations

import numpy as np

from huse_edge._tf import tf
from huse_edge.recipe import LossWeights

COMPONENTS = ("class_loss", "graph_loss", "gap_loss", "fused_class_loss")


def class_level_losses(labels: tf.Tensor, logits: tf.Tensor, smoothing: float = 0.0) -> tf.Tensor:
    """Softmax cross-entropy per example, against label-smoothed targets when `smoothing` > 0."""
    if not smoothing:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    classes = tf.shape(logits)[-1]
    targets = tf.one_hot(labels, classes, dtype=logits.dtype) * (1.0 - smoothing) + smoothing / tf.cast(
        classes, logits.dtype)
    return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)


def semantic_similarity_sum(rows: tf.Tensor, row_labels: tf.Tensor, columns: tf.Tensor, column_labels: tf.Tensor,
                            class_distances: tf.Tensor, threshold: float) -> tf.Tensor:
    """sum over (row, column) pairs of s_ij * (d(u_i, u_j) - A[y_i, y_j])^2."""
    target = tf.gather(tf.gather(class_distances, row_labels), column_labels, axis=1)
    mask = tf.cast(target < threshold, rows.dtype)
    distances = 1.0 - tf.matmul(rows, columns, transpose_b=True)
    return tf.reduce_sum(tf.square(distances - target) * mask)


def cross_modal_gaps(image_embeddings: tf.Tensor, text_embeddings: tf.Tensor) -> tf.Tensor:
    """Cosine distance between the image and the text embedding of each product."""
    return 1.0 - tf.reduce_sum(image_embeddings * text_embeddings, axis=-1)


def replicas_in_sync() -> tf.distribute.ReplicaContext | None:
    """The replica context when a strategy runs several replicas in sync, else None."""
    context = tf.distribute.get_replica_context()
    return context if context is not None and context.num_replicas_in_sync > 1 else None


def global_values(parts: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """The global-batch losses from this replica's shares (what to log); the shares themselves otherwise."""
    context = replicas_in_sync()
    return parts if context is None else {k: context.all_reduce("SUM", v) for k, v in parts.items()}


class HuseLoss:
    """Weighted sum of the three losses; returns every component so each can be logged."""

    def __init__(self, class_distances: np.ndarray, weights: LossWeights = LossWeights()):
        self.class_distances = tf.constant(class_distances, tf.float32)
        self.weights = weights

    def __call__(self, outputs: dict, labels: tf.Tensor) -> dict[str, tf.Tensor]:
        """Each loss of the global batch, or this replica's share of it (see the module docstring)."""
        labels = tf.cast(tf.reshape(labels, [-1]), tf.int32)
        image, text = outputs["image_embedding"], outputs["text_embedding"]
        universal, universal_labels = tf.concat([image, text], 0), tf.concat([labels, labels], 0)
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        context = replicas_in_sync()
        smoothing = self.weights.label_smoothing
        others, other_labels = universal, universal_labels
        if context is not None:
            count = context.all_reduce("SUM", count)
            others, other_labels = context.all_gather(universal, 0), context.all_gather(universal_labels, 0)
        parts = {
            "class_loss": 0.5 * tf.reduce_sum(class_level_losses(labels, outputs["image_logits"], smoothing)
                                              + class_level_losses(labels, outputs["text_logits"], smoothing)) / count,
            "graph_loss": semantic_similarity_sum(universal, universal_labels, others, other_labels,
                                                  self.class_distances, self.weights.threshold) / (2 * count) ** 2,
            "gap_loss": tf.reduce_sum(cross_modal_gaps(image, text)) / count,
            "fused_class_loss": tf.reduce_sum(class_level_losses(
                labels, 0.5 * (outputs["image_logits"] + outputs["text_logits"]), smoothing)) / count,
        }
        parts["loss"] = (self.weights.class_level * parts["class_loss"] + self.weights.semantic * parts["graph_loss"]
                         + self.weights.gap * parts["gap_loss"])
        if self.weights.fused:
            parts["loss"] += self.weights.fused * parts["fused_class_loss"]
        return parts
