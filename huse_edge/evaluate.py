"""Metrics on a split: classification per modality and hierarchy level, and class-level retrieval recall.

Fusion: the fused prediction is the softmax of the weighted mean of the image and text logits (late fusion through
the shared classification layer, `layers.FusedProbabilities`; the image weight is chosen on the validation split
after training), the same computation as the exported `classify_product` signature.

Class-level Recall@K (the HUSE paper's retrieval metric): a query counts as a hit when at least one of its K
nearest neighbours (cosine) in the gallery has the query's class. Image->text and text->image search the other
modality of the whole split; image->image and text->text search the same modality without the query itself.
Instance-level Recall@K (cross-modal only): the query product's own title/photo is among its K nearest.

Calibration of the fused probability, which is what a catalogue's owner thresholds to decide which predictions to
review: the expected calibration error over 15 equal-width confidence bins (Guo et al. 2017), and the share and
top-1 of the predictions made at probability >= `CONFIDENT` 0.9.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from huse_edge.hierarchy import LabelHierarchy
from huse_edge.index import normalise

RECALL_KS = (1, 5, 10)
CONFIDENT = 0.9
CALIBRATION_BINS = 15
_QUERY_CHUNK = 1024


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argpartition(-scores, kth=min(k, scores.shape[1]) - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def class_recall_at_k(queries: np.ndarray, gallery: np.ndarray, query_labels: np.ndarray,
                      gallery_labels: np.ndarray, ks: Sequence[int] = RECALL_KS,
                      exclude_self: bool = False) -> dict[int, float]:
    """Class-level Recall@K as the paper defines it: a query hits when any of its K nearest gallery items shares its
    class (`exclude_self` when queries and gallery are the same items)."""
    hits = {k: 0 for k in ks}
    kmax = max(ks)
    for start in range(0, len(queries), _QUERY_CHUNK):
        similarity = queries[start: start + _QUERY_CHUNK] @ gallery.T
        if exclude_self:
            rows = np.arange(similarity.shape[0])
            similarity[rows, rows + start] = -np.inf
        nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :kmax]
        same = gallery_labels[nearest] == query_labels[start: start + _QUERY_CHUNK, None]
        for k in ks:
            hits[k] += int(np.sum(np.any(same[:, :k], axis=1)))
    return {k: hits[k] / len(queries) for k in ks}


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = CALIBRATION_BINS) -> float:
    """The mean gap between each prediction's probability and how often predictions of that probability are right,
    over equal-width bins weighted by their products: 0 when a prediction made at probability p is right a share p
    of the time, so that a threshold on the probability means what it says."""
    confidence = probabilities.max(axis=1)
    correct = np.argmax(probabilities, axis=1) == labels
    bin_of = np.minimum((confidence * bins).astype(int), bins - 1)
    gaps = [np.sum(bin_of == b) * abs(np.mean(correct[bin_of == b]) - np.mean(confidence[bin_of == b]))
            for b in np.unique(bin_of)]
    return float(np.sum(gaps) / len(labels))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def best_fusion_weight(image_logits: np.ndarray, text_logits: np.ndarray, labels: np.ndarray) -> float:
    """The image weight of late fusion with the best top-1 on these (validation) outputs, on a 0.05 grid; among
    equally good weights the one closest to the plain mean."""
    grid = sorted(np.round(np.arange(0.0, 1.0001, 0.05), 2), key=lambda w: abs(w - 0.5))
    accuracy = {w: float(np.mean(np.argmax(w * image_logits + (1 - w) * text_logits, axis=1) == labels))
                for w in grid}
    return float(max(grid, key=lambda w: accuracy[w]))


def evaluate_outputs(outputs: dict[str, np.ndarray], labels: np.ndarray, hierarchy: LabelHierarchy) -> dict:
    """All metrics from the model's outputs (embeddings, logits, fused probabilities) on one split."""
    labels = np.asarray(labels)
    scores = {"image": outputs["image_logits"], "text": outputs["text_logits"],
              "fused": outputs["fused_probabilities"]}
    metrics: dict = {"products": int(len(labels))}
    for name, value in scores.items():
        predicted = np.argmax(value, axis=1)
        metrics[f"{name}_top1"] = top_k_accuracy(value, labels, 1)
        metrics[f"{name}_top5"] = top_k_accuracy(value, labels, 5)
        for level in range(hierarchy.depth):
            ids = hierarchy.level_ids(level)
            metrics[f"{name}_level{level}_top1"] = float(np.mean(ids[predicted] == ids[labels]))
    fused = outputs["fused_probabilities"]
    confident = fused.max(axis=1) >= CONFIDENT
    metrics["fused_ece"] = expected_calibration_error(fused, labels)
    metrics["fused_confident_share"] = float(np.mean(confident))
    metrics["fused_confident_top1"] = (top_k_accuracy(fused[confident], labels[confident], 1) if confident.any()
                                       else None)
    image = normalise(outputs["image_embedding"])  # cosine: quantised models' outputs are only nearly unit length
    text = normalise(outputs["text_embedding"])
    directions = {"image_to_text": (image, text, False), "text_to_image": (text, image, False),
                  "image_to_image": (image, image, True), "text_to_text": (text, text, True)}
    for name, (queries, gallery, exclude) in directions.items():
        for k, value in class_recall_at_k(queries, gallery, labels, labels, exclude_self=exclude).items():
            metrics[f"{name}_R@{k}"] = value
    own = np.arange(len(labels))  # every product its own class: instance-level recall
    for name, (queries, gallery, _) in list(directions.items())[:2]:
        for k, value in class_recall_at_k(queries, gallery, own, own).items():
            metrics[f"{name}_instance_R@{k}"] = value
    metrics["image_text_cosine"] = float(np.mean(np.sum(image * text, axis=1)))
    return metrics


def format_metrics(metrics: dict) -> str:
    """A readable table of the headline metrics."""
    lines = [f"{'':<8}{'top-1':>8}{'top-5':>8}" + "".join(f"{'L' + str(i) + ' top-1':>11}"
                                                         for i in range(_levels(metrics)))]
    for name in ("image", "text", "fused"):
        levels = "".join(f"{metrics[f'{name}_level{i}_top1']:>11.4f}" for i in range(_levels(metrics)))
        lines.append(f"{name:<8}{metrics[f'{name}_top1']:>8.4f}{metrics[f'{name}_top5']:>8.4f}{levels}")
    lines.append(_calibration_line(metrics))
    lines.append(f"{'retrieval (class-level)':<24}" + "".join(f"{'R@' + str(k):>8}" for k in RECALL_KS))
    for direction in ("image_to_text", "text_to_image", "image_to_image", "text_to_text"):
        lines.append(f"{direction:<24}" + "".join(f"{metrics[f'{direction}_R@{k}']:>8.4f}" for k in RECALL_KS))
    lines.append(f"{'retrieval (instance)':<24}" + "".join(f"{'R@' + str(k):>8}" for k in RECALL_KS))
    for direction in ("image_to_text", "text_to_image"):
        lines.append(f"{direction:<24}" + "".join(f"{metrics[f'{direction}_instance_R@{k}']:>8.4f}"
                                                  for k in RECALL_KS))
    lines.append(f"products: {metrics['products']}, mean image-text cosine of a product: "
                 f"{metrics['image_text_cosine']:.4f}")
    return "\n".join(lines)


def _levels(metrics: dict) -> int:
    return sum(1 for key in metrics if key.startswith("fused_level") and key.endswith("_top1"))


def _calibration_line(metrics: dict) -> str:
    confident = metrics["fused_confident_top1"]
    return (f"fused calibration: ECE {metrics['fused_ece']:.4f}; probability >= {CONFIDENT} for "
            f"{100 * metrics['fused_confident_share']:.1f}% of products"
            + ("" if confident is None else f", of which {100 * confident:.2f}% right"))
