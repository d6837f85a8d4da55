"""`huse-edge evaluate`: a saved model directory on any catalogue in the training format."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from huse_edge._tf import tf
from huse_edge.catalogue import Columns
from huse_edge.evaluate import evaluate_outputs
from huse_edge.features import pixels_dataset
from huse_edge.model import OUTPUTS
from huse_edge.model_dir import ModelDir
from huse_edge.train import TrainConfig, load_labelled


def columns_of(model_dir: ModelDir) -> Columns:
    saved = dict(model_dir.config["columns"])
    saved["category"] = tuple(saved["category"])
    return Columns(**saved)


def keras_outputs(model, model_dir: ModelDir, products, batch_size: int = 256) -> dict[str, np.ndarray]:
    """The float Keras model's outputs for products, through the same preprocessing as the edge runtime."""
    config = model_dir.model_config
    images = pixels_dataset([p.image for p in products], config.image_height, config.image_width, batch_size)
    outputs: dict[str, list] = {k: [] for k in OUTPUTS}
    for start, pixels in zip(range(0, len(products), batch_size), images):
        tokens = model_dir.tokenizer.encode_batch(p.title for p in products[start: start + batch_size])
        batch = model([tf.cast(pixels, tf.float32), tokens], training=False)
        for key in OUTPUTS:
            outputs[key].append(batch[key].numpy())
    return {k: np.concatenate(v) for k, v in outputs.items()}


def labelled_split(model_dir: ModelDir, catalogue: str | Path, split: str):
    train = TrainConfig(**model_dir.config["train"])
    _, labelled = load_labelled(catalogue, columns_of(model_dir), train, strict=False, hierarchy=model_dir.hierarchy)
    return labelled if split == "all" else labelled.split(split)


def evaluate_model_dir(path: str | Path, catalogue: str | Path, split: str = "test") -> dict:
    model_dir = ModelDir.load(path)
    part = labelled_split(model_dir, catalogue, split)
    outputs = keras_outputs(model_dir.keras_model(), model_dir, part.products)
    return {**evaluate_outputs(outputs, np.asarray(part.labels), model_dir.hierarchy), "split": split}
