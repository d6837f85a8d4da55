"""The frozen-backbone feature cache: its key follows everything that changes the features, and what it stores
and returns on a hit are the extractor's outputs."""

import os

import numpy as np
import pytest

from huse_edge.catalogue import read_catalogue
from huse_edge.features import cache_key, cached_features, features_and_early_outputs, frozen_outputs
from huse_edge.model import build_huse
from huse_edge.pixels import load_pixels
from huse_edge.recipe import HuseConfig


@pytest.fixture(scope="module")
def products(slice_catalogue):
    return read_catalogue(slice_catalogue).products[:12]


def _model(**overrides):
    model = build_huse(HuseConfig(num_classes=8, vocab_size=50, **overrides))
    assert model.feature_extractor is not None, model.backbone_source
    return model


def test_cache_key_changes_with_whatever_changes_the_features(products):
    model = _model()
    key = cache_key(model, products)
    assert cache_key(_model(), products) == key  # a rebuilt model with the same weights hits the cache
    assert cache_key(_model(image_height=160, image_width=120), products) != key
    assert cache_key(_model(trainable_blocks=3), products) != key
    assert cache_key(model, products[:-1]) != key
    weight = model.feature_extractor.weights[0]
    weight.assign(weight * 1.001)
    assert cache_key(model, products) != key


def test_touching_a_photo_changes_the_key(products):
    model = _model()
    key = cache_key(model, products)
    stat = products[0].image.stat()
    os.utime(products[0].image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    try:
        assert cache_key(model, products) != key
    finally:
        os.utime(products[0].image, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_cached_features_are_the_extractors_outputs_and_a_hit_returns_them(products, tmp_path, capsys):
    model = _model()
    config = model.config
    pixels = load_pixels([p.image for p in products], config.image_height, config.image_width).astype(np.float32)
    stored = cached_features(model, products, tmp_path)
    assert [p.name for p in tmp_path.glob("features-*.npy")] == [f"features-{cache_key(model, products)}.npy"]
    # the extractor's graph outputs for the whole batch, rounded to float16: the same bits as the batches of 64
    assert stored.dtype == np.float16
    np.testing.assert_array_equal(stored, model.feature_extractor.predict_on_batch(pixels).astype(np.float16))
    capsys.readouterr()
    again = cached_features(model, products, tmp_path)
    assert "reusing cache" in capsys.readouterr().out
    assert np.array_equal(np.asarray(again), np.asarray(stored))


def test_one_pass_gives_the_cached_features_and_the_early_outputs_bit_for_bit(products, tmp_path):
    """The fine-tune's single pass over the photos writes the cache `cached_features` would write, and returns
    each split's early-block outputs as `frozen_outputs` computes them, whatever order the rows come in."""
    model = _model()
    config = model.config
    pixels = load_pixels([p.image for p in products], config.image_height, config.image_width)
    views = model.split_at(5)
    rows = {"train": np.array([7, 0, 3, 11, 5, 9, 1]), "val": np.array([2, 10, 4]), "test": np.array([8, 6])}
    with pytest.raises(ValueError, match="every product exactly once"):
        features_and_early_outputs(model, views, products, tmp_path, pixels, {**rows, "test": np.array([8, 8])})
    features, early = features_and_early_outputs(model, views, products, tmp_path, pixels, rows, batch_size=4)
    reference = cached_features(model, products, tmp_path / "reference")
    np.testing.assert_array_equal(features, reference)
    for name, row in rows.items():
        np.testing.assert_array_equal(early[name], frozen_outputs(views.early, pixels, rows=row))
    again, early_again = features_and_early_outputs(model, views, products, tmp_path, pixels, rows)  # a cache hit
    assert np.array_equal(np.asarray(again), np.asarray(features))
    assert all(np.array_equal(early_again[name], early[name]) for name in rows)
