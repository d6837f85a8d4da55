import numpy as np
import pytest

from huse_edge.hierarchy import ClassEmbeddingsError, LabelHierarchy, cosine_distances, user_class_distances


def test_tree_distance_formula():
    h = LabelHierarchy.from_paths([("Apparel", "Topwear", "Tshirts"), ("Apparel", "Topwear", "Shirts"),
                                   ("Apparel", "Bottomwear", "Jeans"), ("Footwear", "Shoes", "Heels")])
    d = cosine_distances(h.class_embeddings())
    names = h.names
    i = {n: names.index(n) for n in names}
    assert np.isclose(d[i["Tshirts"], i["Tshirts"]], 0.0, atol=1e-6)
    assert np.isclose(d[i["Tshirts"], i["Shirts"]], 1 / 3, atol=1e-6)
    assert np.isclose(d[i["Tshirts"], i["Jeans"]], 2 / 3, atol=1e-6)
    assert np.isclose(d[i["Tshirts"], i["Heels"]], 1.0, atol=1e-6)


def test_labels_roundtrip(tmp_path):
    h = LabelHierarchy.from_paths([("A", "B", "C"), ("A", "B", "D")])
    h.save(tmp_path / "labels.txt")
    assert (tmp_path / "labels.txt").read_text() == "A > B > C\nA > B > D\n"
    assert LabelHierarchy.load(tmp_path / "labels.txt") == h


def test_a_users_class_embeddings_are_checked_before_they_become_distances():
    matrix = np.array([[1, 0], [0, 2], [1, 1]], np.float32)
    assert np.array_equal(user_class_distances(matrix, 3), cosine_distances(matrix))
    for wrong, message in ((matrix[:2], r"expected a \(3, dims\) number matrix"),
                           (np.array([["a", "b"]] * 3), "number matrix"),
                           (np.array([[1, 0], [np.nan, 1], [1, 1]]), "NaN or infinite"),
                           (np.array([[1, 0], [0, 0], [1, 1]]), "all-zero row")):
        with pytest.raises(ClassEmbeddingsError, match=message):
            user_class_distances(wrong, 3)
