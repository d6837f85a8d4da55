"""`huse-edge evaluate`: a saved model directory on any catalogue in the training format."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from huse_edge.catalogue import LabelledCatalogue, Product
from huse_edge.evaluate import evaluate_outputs
from huse_edge.model_dir import ModelDir
from huse_edge.recipe import TrainConfig
from huse_edge.reference import ReferenceRun, product_inputs
from huse_edge.train import load_labelled, predict_outputs


def model_inputs(model_dir: ModelDir, products: Sequence[Product]) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 pixels, int32 tokens) of products, through the same preprocessing as the edge runtime."""
    config = model_dir.model_config
    return product_inputs(products, config.image_height, config.image_width, model_dir.tokenizer)


def labelled_split(model_dir: ModelDir, catalogue: str | Path, split: str) -> LabelledCatalogue:
    train = TrainConfig(**model_dir.config["train"])
    _, labelled = load_labelled(catalogue, model_dir.columns, train, strict=False, hierarchy=model_dir.hierarchy)
    return labelled.split(split)


def evaluate_model_dir(path: str | Path, catalogue: str | Path, split: str = "test") -> dict:
    model_dir = ModelDir.load(path)
    part = labelled_split(model_dir, catalogue, split)
    outputs = predict_outputs(model_dir.keras_model(), *model_inputs(model_dir, part.products))
    return {**evaluate_outputs(outputs, np.asarray(part.labels), model_dir.hierarchy), "split": split}


def keras_reference(path: str | Path, catalogue: str | Path | None, split: str = "test",
                    max_products: int | None = None) -> ReferenceRun:
    """What `verify` holds every backend to (catalogue default: the one the model was trained on)."""
    model_dir = ModelDir.load(path)
    catalogue = Path(catalogue or model_dir.training_catalogue())
    part = labelled_split(model_dir, catalogue, split)
    products = part.products[:max_products] if max_products else part.products
    images, tokens = model_inputs(model_dir, products)
    return ReferenceRun(products, images, tokens, np.asarray(part.labels[: len(products)]),
                        predict_outputs(model_dir.keras_model(), images, tokens), split, catalogue,
                        model_dir.columns)
