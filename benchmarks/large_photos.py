"""Image-only top-1 of a bundle on large versions of a split's photos, prepared as the preprocessing spec says and
with its block-averaging step (step 2 of `huse_edge.transform`) left out.

A phone camera or a catalogue at full resolution gives photos ten to thirty times the model input's side, while the
shared catalogue's photos are smaller than the input. Each photo is enlarged to `--height` pixels (bicubic, aspect
kept), given seeded Gaussian noise of each `--noise` standard deviation (a camera sensor's), and saved and decoded
as a JPEG of quality 92; the bundle's image tower and shared layer then classify it both ways. Runs on the edge
runtime alone (no TensorFlow).

    python benchmarks/large_photos.py BUNDLE [CATALOGUE] [--variant int8] [--height 1600] [--noise 0 --noise 12]
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from PIL import Image

from huse_edge.bundle import Bundle
from huse_edge.catalogue import read_catalogue
from huse_edge.cli import DEFAULT_CATALOGUE
from huse_edge.runtime import HuseRuntime
from huse_edge.transform import load_rgb, preprocess, resize_bilinear

JPEG_QUALITY = 92


def enlarged(pixels: np.ndarray, height: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """The photo at `height` rows, with sensor-like noise, through a JPEG round trip."""
    width = round(pixels.shape[1] * height / pixels.shape[0])
    large = np.asarray(Image.fromarray(pixels).resize((width, height), Image.BICUBIC), np.float32)
    if noise:
        large = large + rng.normal(0.0, noise, large.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(large), 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return load_rgb(io.BytesIO(buffer.getvalue()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("catalogue", nargs="?", default=DEFAULT_CATALOGUE)
    parser.add_argument("--split", default="test")
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--noise", type=float, action="append", help="standard deviations (default: 0 and 12)")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    bundle = Bundle.load(args.bundle)
    runtime = HuseRuntime(bundle, args.variant)
    classes = bundle.hierarchy.index()
    products = [p for p in read_catalogue(args.catalogue).split(args.split) if p.path in classes]
    labels = np.array([classes[p.path] for p in products])
    size = (bundle.image_height, bundle.image_width)
    print(f"{len(products)} {args.split} products of the bundle's classes; {args.variant} model; "
          f"photos enlarged to {args.height} rows")
    print(f"{'photos':<24} {'the spec':>9} {'no step 2':>10} {'only spec right':>16} {'only no-step-2 right':>21}")
    conditions = [("as they are", None)] + [(f"large, noise {s:g}", s) for s in (args.noise or [0.0, 12.0])]
    for name, noise in conditions:
        rng = np.random.default_rng(0)
        right = {"spec": [], "bilinear": []}
        for start in range(0, len(products), args.batch):
            raw = [load_rgb(p.image) for p in products[start: start + args.batch]]
            if noise is not None:
                raw = [enlarged(r, args.height, noise, rng) for r in raw]
            ways = {"spec": [preprocess(r, *size) for r in raw],
                    "bilinear": [resize_bilinear(r.astype(np.float32), *size) for r in raw]}
            for way, pixels in ways.items():
                predicted = runtime.classify(runtime.embed_image(np.stack(pixels))).argmax(axis=1)
                right[way].append(predicted == labels[start: start + args.batch])
        spec, bilinear = (np.concatenate(right[w]) for w in ("spec", "bilinear"))
        print(f"{name:<24} {spec.mean():>9.4f} {bilinear.mean():>10.4f} {np.sum(spec & ~bilinear):>16d} "
              f"{np.sum(bilinear & ~spec):>21d}", flush=True)


if __name__ == "__main__":
    main()
