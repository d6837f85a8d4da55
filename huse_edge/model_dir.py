"""The trained-model directory written by `huse-edge train` and read by evaluate and export.

Layout: `model.keras` (the inference model, loadable in safe mode), `config.json` (model, data, loss and training
configuration: enough to rebuild and re-evaluate), `labels.txt` (one class per line as its full hierarchy path),
`vocab.txt` + `tokenizer.json`, `class_distances.npy` (the semantic graph used by the loss) and `metrics.json`.
Every file is written atomically; `metrics.json` is written last, so its presence marks a complete directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from huse_edge.atomic import atomic_path, write_text
from huse_edge.catalogue import Columns
from huse_edge.errors import ModelDirError
from huse_edge.hierarchy import LabelHierarchy
from huse_edge.recipe import HuseConfig
from huse_edge.tokenizer import Tokenizer

if TYPE_CHECKING:  # TensorFlow is imported only when a Keras model is loaded
    from huse_edge._tf import keras

MODEL_FILE = "model.keras"


@dataclass
class ModelDir:
    path: Path
    config: dict
    model_config: HuseConfig
    hierarchy: LabelHierarchy
    tokenizer: Tokenizer
    class_distances: np.ndarray
    metrics: dict

    @property
    def columns(self) -> Columns:
        """The catalogue columns the model was trained with: evaluate and export read other catalogues by them."""
        return Columns.from_dict(self.config["columns"])

    def training_catalogue(self) -> Path:
        """The catalogue training read, which evaluate, export and verify default to. Recorded as an absolute path;
        model directories trained before that recorded it as given, relative to the folder training ran in."""
        catalogue = Path(self.metrics["catalogue"])
        if not catalogue.exists():
            where = "" if catalogue.is_absolute() else " from the current folder"
            raise ModelDirError(f"{self.path}: the catalogue it was trained on, {catalogue}, is not found{where}; "
                                "name the catalogue on the command line")
        return catalogue

    @classmethod
    def load(cls, path: str | Path) -> "ModelDir":
        path = Path(path)
        if not (path / "metrics.json").is_file():
            raise ModelDirError(f"{path}: not a complete model directory (no metrics.json; did training finish?)")
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            model_config = HuseConfig.from_dict(config["model"])
            hierarchy = LabelHierarchy.load(path / "labels.txt")
            tokenizer = Tokenizer.load(path)
            distances = np.load(path / "class_distances.npy", allow_pickle=False)
            metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ModelDirError(f"{path}: unreadable model directory ({error})") from None
        if len(hierarchy) != model_config.num_classes or distances.shape != (len(hierarchy),) * 2:
            raise ModelDirError(f"{path}: labels.txt, class_distances.npy and config.json disagree on classes")
        if len(tokenizer) != model_config.vocab_size:
            raise ModelDirError(f"{path}: vocab.txt has {len(tokenizer)} tokens, the model {model_config.vocab_size}")
        return cls(path, config, model_config, hierarchy, tokenizer, distances, metrics)

    def keras_model(self) -> keras.Model:
        """The inference model, deserialised in safe mode (no arbitrary code)."""
        from huse_edge import layers  # noqa: F401  (registers the custom layers)
        from huse_edge._tf import keras

        return keras.models.load_model(self.path / MODEL_FILE, compile=False, safe_mode=True)


def save_model_dir(path: str | Path, inference_model: keras.Model, config: dict, hierarchy: LabelHierarchy,
                   tokenizer: Tokenizer, class_distances: np.ndarray, metrics: dict) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").unlink(missing_ok=True)
    with atomic_path(path / MODEL_FILE) as tmp:
        inference_model.save(tmp)
    write_text(path / "config.json", json.dumps(config, indent=2) + "\n")
    hierarchy.save(path / "labels.txt")
    tokenizer.save(path)
    with atomic_path(path / "class_distances.npy") as tmp:
        np.save(tmp, np.asarray(class_distances, np.float32), allow_pickle=False)
    write_text(path / "metrics.json", json.dumps(metrics, indent=2) + "\n")
