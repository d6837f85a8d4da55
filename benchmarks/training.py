"""Training throughput with and without the cached-feature path, and time-to-accuracy of a finished run.

    python benchmarks/training.py [CATALOGUE] [--products 1024] [--model-dir runs/huse]

Throughput: on `--products` products of the catalogue, with the default model, products/s of
- computing the frozen backbone features (what the cache stores, once per catalogue),
- one training epoch on cached features (what `huse-edge train` does every epoch),
- one training epoch from pixels through the whole network with the same layers trainable (no cache),
- one epoch of the fine-tune phase: from pixels, every backbone layer but the batch norms trainable, batch 64.
Time-to-accuracy: from a model directory's `history.csv` (epoch wall time and validation accuracy per epoch),
the training time at which the validation accuracies first came within 0.5 point of their best.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from huse_edge._tf import keras
from huse_edge.catalogue import label, read_catalogue
from huse_edge.cli import DEFAULT_CATALOGUE
from huse_edge.hierarchy import cosine_distances
from huse_edge.loss import HuseLoss
from huse_edge.model import build_huse
from huse_edge.pixels import load_pixels
from huse_edge.recipe import Augmentation, HuseConfig, LossWeights, TrainConfig
from huse_edge.tokenizer import Tokenizer
from huse_edge.train import HuseTrainer, finetune_network, training_batches


def _epoch_rate(network, images: np.ndarray, tokens: np.ndarray, labels: np.ndarray, distances,
                batch_size: int = 256) -> float:
    trainer = HuseTrainer(network, HuseLoss(distances, LossWeights()))
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    data = training_batches(images, tokens, labels, batch_size, True, 0, Augmentation(flip=True))
    trainer.fit(data.take(1), verbose=0)  # build and trace
    start = time.perf_counter()
    trainer.fit(data, verbose=0)
    return len(labels) / (time.perf_counter() - start)


def throughput(catalogue: Path, products: int) -> dict:
    labelled = label(read_catalogue(catalogue), -1, 20)
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(labelled.products), min(products, len(labelled.products)), replace=False)
    sample = [labelled.products[i] for i in chosen]
    labels = np.asarray([labelled.labels[i] for i in chosen])
    tokenizer = Tokenizer.build(p.title for p in sample)
    config = HuseConfig(num_classes=len(labelled.hierarchy), vocab_size=len(tokenizer))
    model = build_huse(config)
    tokens = tokenizer.encode_batch(p.title for p in sample)
    pixels = load_pixels([p.image for p in sample], config.image_height, config.image_width)
    distances = cosine_distances(labelled.hierarchy.class_embeddings())

    start = time.perf_counter()
    features = np.concatenate([model.feature_extractor(pixels[i: i + 64].astype(np.float32), training=False).numpy()
                               for i in range(0, len(pixels), 64)])
    feature_rate = len(pixels) / (time.perf_counter() - start)
    rates = {"products": len(sample), "feature_extraction_products_per_s": feature_rate,
             "cached_epoch_products_per_s": _epoch_rate(model.trainable, features, tokens, labels, distances),
             "pixel_epoch_products_per_s": _epoch_rate(model.inference, pixels, tokens, labels, distances)}
    rates["finetune_from_block"] = TrainConfig().for_backbone(config.backbone).finetune_from_block
    for key, from_block in (("finetune_epoch", rates["finetune_from_block"]), ("finetune_all_blocks_epoch", 0)):
        rates[f"{key}_products_per_s"] = _epoch_rate(finetune_network(model, from_block), pixels, tokens, labels,
                                                     distances, TrainConfig.finetune_batch_size)
    return rates


def time_to_accuracy(model_dir: Path, within: float = 0.005) -> dict:
    with (model_dir / "history.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    if not rows or "epoch_seconds" not in rows[0]:
        return {}
    elapsed = np.cumsum([float(r["epoch_seconds"]) for r in rows])
    out = {"epochs": len(rows), "fit_seconds": float(elapsed[-1])}
    for metric in ("val_image_accuracy", "val_text_accuracy", "val_fused_accuracy"):
        values = np.array([float(r[metric]) for r in rows])
        first = int(np.argmax(values >= values.max() - within))
        out[metric] = {"best": float(values.max()), "seconds_to_within_0.5_point": float(elapsed[first]),
                       "epoch": first + 1}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("catalogue", type=Path, nargs="?", default=DEFAULT_CATALOGUE)
    parser.add_argument("--products", type=int, default=1024)
    parser.add_argument("--model-dir", type=Path, help="a finished `huse-edge train` run, for time-to-accuracy")
    args = parser.parse_args()
    rates = throughput(args.catalogue, args.products)
    print(f"{rates['products']} products: features {rates['feature_extraction_products_per_s']:.0f}/s once, "
          f"training epoch {rates['cached_epoch_products_per_s']:.0f}/s on cached features vs "
          f"{rates['pixel_epoch_products_per_s']:.0f}/s from pixels "
          f"({rates['cached_epoch_products_per_s'] / rates['pixel_epoch_products_per_s']:.1f}x); fine-tune epoch "
          f"{rates['finetune_epoch_products_per_s']:.0f}/s (from block {rates['finetune_from_block']}, batch "
          f"{TrainConfig.finetune_batch_size}; {rates['finetune_all_blocks_epoch_products_per_s']:.0f}/s with every "
          "block and the stem trained)")
    if args.model_dir:
        for metric, figures in time_to_accuracy(args.model_dir).items():
            if isinstance(figures, dict):
                print(f"{metric}: best {figures['best']:.4f}, within 0.5 point after "
                      f"{figures['seconds_to_within_0.5_point']:.0f} s (epoch {figures['epoch']})")


if __name__ == "__main__":
    main()
