"""Decoding many photos on worker processes gives `preprocess`'s pixels in the photos' order, and a broken photo
among them is reported by name."""

import numpy as np
import pytest

from conftest import require_catalogue

from huse_edge.pixels import MIN_PHOTOS_PER_WORKER, load_pixels, pixel_batches, worker_count
from huse_edge.transform import ImageError, preprocess

PHOTOS = 2 * MIN_PHOTOS_PER_WORKER + 100  # enough for two workers, with a short last batch


@pytest.fixture(scope="module")
def photos():
    images = sorted((require_catalogue().parent / "images").glob("*.jpg"))
    if len(images) < PHOTOS or worker_count(PHOTOS) < 2:
        pytest.skip(f"needs {PHOTOS} photos and 2 cores to start worker processes")
    return images[:PHOTOS]


def test_workers_give_each_photos_pixels_in_order(photos):
    rng = np.random.default_rng(0)
    shuffled = [photos[i] for i in rng.permutation(len(photos))]
    pixels = load_pixels(shuffled, 128, 96)
    assert pixels.shape == (PHOTOS, 128, 96, 3)
    for row in rng.choice(PHOTOS, 64, replace=False):
        np.testing.assert_array_equal(pixels[row], preprocess(shuffled[row], 128, 96))
    sizes = [len(batch) for batch in pixel_batches(shuffled, 40, 30, 300)]
    assert sizes == [300] * (PHOTOS // 300) + [PHOTOS % 300]


def test_a_broken_photo_in_a_worker_is_reported_by_name(photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:200])
    with pytest.raises(ImageError, match="broken.jpg"):
        load_pixels([*photos[:-1], broken], 128, 96)
