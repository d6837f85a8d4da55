"""The image preprocessing specification (`huse_edge.transform`) on hand-computed cases, and what its reduction
step is for: a large photo's finest detail averages out instead of aliasing into the model input."""

import numpy as np
import pytest

from huse_edge.transform import preprocess, reduce_blocks


def test_upscaling_interpolates_with_half_pixel_centres():
    # 1x2 grey [0, 100] -> 1x4: source x = (i + 0.5) / 2 - 0.5 -> clamped to 0, 0.25, 0.75, 1
    out = preprocess(np.array([[[0] * 3, [100] * 3]], np.uint8), 1, 4)
    assert out[0, :, 0].tolist() == [0, 25, 75, 100]


def test_a_photo_twice_the_input_size_is_averaged_over_blocks_first():
    # both rows [1, 2, 5, 6, 9] -> 1x2: k = 2, block means 1.5, 5.5 and 9 (the narrower last block), then bilinear
    # at x = 0.25 and 1.75: 2.5 -> 2 (half to even) and 8.125 -> 8 (the Kotlin core's test has the same case)
    photo = np.repeat(np.array([[1, 2, 5, 6, 9]] * 2, np.uint8)[:, :, None], 3, axis=2)
    assert preprocess(photo, 1, 2)[0, :, 0].tolist() == [2, 8]


@pytest.mark.parametrize("rows, columns, factor", [(7, 5, 2), (10, 9, 3), (13, 4, 4), (6, 6, 6)])
def test_block_means_include_the_narrower_last_blocks(rows, columns, factor):
    photo = np.random.default_rng(rows).integers(0, 256, (rows, columns, 3), dtype=np.uint8)
    expected = [[photo[i: i + factor, j: j + factor].reshape(-1, 3).mean(axis=0) for j in range(0, columns, factor)]
                for i in range(0, rows, factor)]
    np.testing.assert_allclose(reduce_blocks(photo, factor), expected, rtol=1e-6)


@pytest.mark.parametrize("shape", [(1283, 967), (1600, 1200), (3000, 2250)])
def test_one_pixel_stripes_of_a_large_photo_read_as_their_mean_grey(shape):
    """Bilinear sampling alone reads two of the ten to twenty-three source columns under each output pixel, so these
    stripes would come out anywhere between black and white. A block of k columns holds at most one white column more
    than black ones: 127.5 / k off the mean grey."""
    stripes = np.zeros((*shape, 3), np.uint8)
    stripes[:, ::2] = 255
    out = preprocess(stripes, 128, 96).astype(float)
    factor = min(shape[0] // 128, shape[1] // 96)
    assert np.abs(out[:, :-2] - 127.5).max() <= 127.5 / factor + 1
    assert np.abs(out - 127.5).max() <= 20  # the narrower last blocks lean further
