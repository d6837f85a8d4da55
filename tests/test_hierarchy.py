import numpy as np

from huse_edge.hierarchy import LabelHierarchy, cosine_distances


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
