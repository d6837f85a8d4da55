import numpy as np
import pytest

from huse_edge.evaluate import evaluate_outputs, expected_calibration_error, format_metrics
from huse_edge.hierarchy import LabelHierarchy

# Four products, three classes: two predictions at 0.95 (right) and 0.92 (wrong), two at 0.62 (one right).
PROBABILITIES = np.array([[0.95, 0.03, 0.02],
                          [0.92, 0.05, 0.03],
                          [0.19, 0.62, 0.19],
                          [0.08, 0.30, 0.62]])
LABELS = np.array([0, 1, 1, 0])


def test_calibration_error_by_hand():
    # 15 bins: 0.95 and 0.92 fall in bins 14 and 13 alone, both 0.62 in bin 9 (right half of the time):
    # (|1 - 0.95| + |0 - 0.92| + 2 * |0.5 - 0.62|) / 4
    assert expected_calibration_error(PROBABILITIES, LABELS) == pytest.approx(1.21 / 4)


def test_predictions_right_as_often_as_they_say_have_no_calibration_error():
    probabilities = np.tile([0.8, 0.2], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0)
    assert expected_calibration_error(probabilities, np.zeros(10, int)) == pytest.approx(0.2)


def test_metrics_report_the_confident_predictions_share_and_top1():
    rng = np.random.default_rng(0)
    hierarchy = LabelHierarchy.from_paths([("A", "a"), ("A", "b"), ("B", "c")])
    embeddings = rng.normal(size=(4, 8)).astype(np.float32)
    logits = np.log(PROBABILITIES)
    metrics = evaluate_outputs({"image_logits": logits, "text_logits": logits, "fused_probabilities": PROBABILITIES,
                                "image_embedding": embeddings, "text_embedding": embeddings}, LABELS, hierarchy)
    assert metrics["fused_top1"] == 0.5
    assert metrics["fused_confident_share"] == 0.5  # 0.95 and 0.92 reach 0.9
    assert metrics["fused_confident_top1"] == 0.5  # of which the first is right
    assert metrics["fused_ece"] == pytest.approx(1.21 / 4)
    assert "ECE 0.3025; probability >= 0.9 for 50.0% of products, of which 50.00% right" in format_metrics(metrics)
