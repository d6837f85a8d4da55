"""Each HUSE loss against a small example computed by hand."""

import numpy as np

from huse_edge.loss import HuseLoss, class_level_losses, cross_modal_gaps, semantic_similarity_sum
from huse_edge.recipe import LossWeights


def unit(*v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_class_level_loss():
    logits = np.array([[2.0, 0.0], [0.0, 0.0]], np.float32)
    expected = (-np.log(np.exp(2) / (np.exp(2) + 1)) + np.log(2)) / 2
    assert np.isclose(float(np.mean(class_level_losses(np.array([0, 1]), logits))), expected, atol=1e-6)


def test_label_smoothed_class_level_loss():
    logits = np.array([[2.0, 0.0, 0.0]], np.float32)
    log_p = logits[0] - np.log(np.sum(np.exp(logits[0])))
    targets = np.array([1 - 0.3 + 0.1, 0.1, 0.1])  # 0.3 spread evenly over the 3 classes
    expected = -np.sum(targets * log_p)
    assert np.isclose(float(class_level_losses(np.array([0]), logits, 0.3)[0]), expected, atol=1e-6)


def test_semantic_similarity_loss_masks_unrelated_pairs():
    emb = np.stack([unit(1, 0), unit(0, 1), unit(1, 1)])
    labels = np.array([0, 1, 2])
    classes = np.array([[0.0, 0.5, 1.0], [0.5, 0.0, 0.2], [1.0, 0.2, 0.0]], np.float32)
    # pairs under the threshold 0.8: all but (0, 2) and (2, 0); cosine distances: d01 = 1, d12 = 1 - 1/sqrt(2)
    d12 = 1 - 1 / np.sqrt(2)
    expected = (2 * (1.0 - 0.5) ** 2 + 2 * (d12 - 0.2) ** 2) / 9
    got = float(semantic_similarity_sum(emb, labels, emb, labels, classes, threshold=0.8)) / 9
    assert np.isclose(got, expected, atol=1e-6)


def test_cross_modal_gap_loss():
    image = np.stack([unit(1, 0), unit(0, 1)])
    text = np.stack([unit(1, 0), unit(1, 0)])
    assert np.isclose(float(np.mean(cross_modal_gaps(image, text))), 0.5, atol=1e-6)


def test_weighted_total_and_components():
    image = np.stack([unit(1, 0), unit(0, 1)])
    text = np.stack([unit(1, 1), unit(0, 1)])
    outputs = {"image_embedding": image, "text_embedding": text,
               "image_logits": np.zeros((2, 2), np.float32), "text_logits": np.zeros((2, 2), np.float32)}
    loss = HuseLoss(np.array([[0, 1], [1, 0]], np.float32), LossWeights(1.0, 2.0, 3.0, 0.8))
    parts = {k: float(v) for k, v in loss(outputs, np.array([0, 1])).items()}
    assert np.isclose(parts["class_loss"], np.log(2), atol=1e-6)
    assert np.isclose(parts["gap_loss"], (1 - 1 / np.sqrt(2)) / 2, atol=1e-6)
    # universal embeddings [i0, i1, t0, t1], labels [0, 1, 0, 1]: only same-class pairs (target 0) are under the
    # threshold; of those only (i0, t0) and (t0, i0) are apart, by 1 - 1/sqrt(2); 4 embeddings -> 16 pairs
    expected_graph = 2 * (1 - 1 / np.sqrt(2)) ** 2 / 16
    assert np.isclose(parts["graph_loss"], expected_graph, atol=1e-6)
    assert np.isclose(parts["loss"], parts["class_loss"] + 2 * parts["graph_loss"] + 3 * parts["gap_loss"],
                      atol=1e-6)


def test_fused_class_loss_trains_the_towers_mean_only_when_weighted():
    image = np.stack([unit(1, 0), unit(0, 1)])
    outputs = {"image_embedding": image, "text_embedding": image,
               "image_logits": np.array([[2, 0], [0, 0]], np.float32),
               "text_logits": np.array([[0, 0], [0, 2]], np.float32)}
    labels = np.array([0, 1])
    distances = np.array([[0, 1], [1, 0]], np.float32)
    # fused logits [[1, 0], [0, 1]]: each product's cross-entropy is log(1 + e^-1)
    expected_fused = np.log1p(np.exp(-1.0))
    off = {k: float(v) for k, v in HuseLoss(distances, LossWeights())(outputs, labels).items()}
    on = {k: float(v) for k, v in HuseLoss(distances, LossWeights(fused=0.5))(outputs, labels).items()}
    assert np.isclose(off["fused_class_loss"], expected_fused, atol=1e-6)
    assert np.isclose(off["loss"], off["class_loss"] + off["graph_loss"] + off["gap_loss"], atol=1e-6)
    assert np.isclose(on["loss"], off["loss"] + 0.5 * expected_fused, atol=1e-6)
