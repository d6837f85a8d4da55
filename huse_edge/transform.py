"""Image preprocessing shared by training, the edge runtime and (re-implemented, golden-tested) the Android app.

Specification (version 2), so every platform produces the same uint8 tensor:
1. Decode the file; apply the EXIF orientation; convert to RGB (alpha is composited onto white, palette and
   greyscale are expanded, CMYK converted).
2. Reduce a large photo: with k = min(floor(in_h / height), floor(in_w / width)), a photo at least twice the output
   size on both axes (k >= 2) becomes a ceil(in_h / k) x ceil(in_w / k) image whose pixel (i, j) is the mean of
   source rows i*k .. i*k+k-1 and columns j*k .. j*k+k-1 that exist (the last row and column of blocks may be
   narrower): the block's exact integer sum divided by its pixel count, in float32. Bilinear sampling reads four
   source pixels per output pixel whatever the photo's size, so without this step a camera photo's noise and fine
   texture alias into the input (version 1 had no step 2; the two agree on photos under twice the input size).
3. Resize to (height, width) with bilinear interpolation, half-pixel centres and no antialiasing: output row y
   samples source row c = clamp((y + 0.5) * in_h / out_h - 0.5, 0, in_h - 1) as (1 - f) * row[floor(c)] +
   f * row[min(floor(c) + 1, in_h - 1)] with f = c - floor(c); columns likewise. Rows are interpolated first,
   then columns, in float32; the coordinates and weights are computed in float64. in_h and in_w are the sizes
   after step 2.
4. Round to nearest with ties to even (numpy `rint`), clip to 0..255, uint8.
The model normalises pixels itself, so the edge input is this uint8 tensor, HWC, RGB.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SPEC_VERSION = 2  # of the specification above; a bundle's preprocessing.json records it
# Refuse decompression bombs before decoding: 40 megapixels is far above any product photo.
MAX_PIXELS = 40_000_000


class ImageError(ValueError):
    """An image that cannot be turned into a model input."""


def load_rgb(path: str | Path) -> np.ndarray:
    """Decodes an image file to an RGB uint8 array (H, W, 3), following step 1 of the specification."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"{path}: {image.width}x{image.height} exceeds {MAX_PIXELS} pixels")
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, rgba)
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ImageError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as error:
        raise ImageError(f"{path}: cannot decode image ({error})") from None


@functools.lru_cache(maxsize=64)
def _axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(low index, high index, float32 weight of low, float32 weight of high) of each output position; cached, as a
    catalogue's photos share a handful of sizes."""
    coords = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    coords = np.clip(coords, 0.0, in_size - 1)
    low = np.floor(coords).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    weight = (coords - low).astype(np.float32)
    arrays = (low, high, 1 - weight, weight)
    for array in arrays:
        array.setflags(write=False)
    return arrays


def reduce_blocks(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Step 2: the float32 mean of each `factor` x `factor` block of uint8 pixels, the last blocks narrower where
    the size is not a multiple. Summed a band of rows at a time, so a camera photo is never copied whole."""
    row_starts, column_starts = np.arange(0, pixels.shape[0], factor), np.arange(0, pixels.shape[1], factor)
    rows = np.stack([pixels[start: start + factor].sum(axis=0, dtype=np.uint32) for start in row_starts])
    sums = np.add.reduceat(rows, column_starts, axis=1)
    counts = np.outer(np.minimum(factor, pixels.shape[0] - row_starts),
                      np.minimum(factor, pixels.shape[1] - column_starts)).astype(np.float32)
    return sums.astype(np.float32) / counts[:, :, None]


def resize_bilinear(source: np.ndarray, height: int, width: int) -> np.ndarray:
    """Steps 3 and 4 of the specification on float32 source values: bilinear, half-pixel centres, no antialiasing,
    rint to uint8. The products and sums are computed in place: the same float32 operations in the same order, with
    fewer temporary arrays, which makes it 15–20% faster on a product photo."""
    y0, y1, wy0, wy1 = _axis_weights(source.shape[0], height)
    x0, x1, wx0, wx1 = _axis_weights(source.shape[1], width)
    rows, other = source[y0], source[y1]
    rows *= wy0[:, None, None]
    other *= wy1[:, None, None]
    rows += other
    out, other = rows[:, x0], rows[:, x1]
    out *= wx0[None, :, None]
    other *= wx1[None, :, None]
    out += other
    return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)


def resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Steps 2 to 4 of the specification: uint8 RGB pixels of any size to the (height, width, 3) model input."""
    factor = min(pixels.shape[0] // height, pixels.shape[1] // width)  # step 2's k
    source = reduce_blocks(pixels, factor) if factor >= 2 else pixels.astype(np.float32)
    return resize_bilinear(source, height, width)


def preprocess(path_or_pixels: str | Path | np.ndarray, height: int, width: int) -> np.ndarray:
    """Model input (height, width, 3) uint8 for an image file or an already decoded RGB array."""
    pixels = path_or_pixels if isinstance(path_or_pixels, np.ndarray) else load_rgb(path_or_pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ImageError(f"expected an RGB uint8 array (H, W, 3), got {pixels.dtype} {pixels.shape}")
    return resize(pixels, height, width)
