"""Title-only TF-IDF + logistic-regression classifiers on the model's split, and HUSE against them product by product.

The classical baseline a multimodal product classifier has to beat: what titles alone give.

    pip install -e '.[bench]'
    python benchmarks/title_baseline.py [CATALOGUE] [--model-dir runs/huse]

Three feature sets, each fitted on the training split with its inverse regularisation C chosen on the validation
split: word uni- and bigrams as scikit-learn splits words (the textbook baseline: one-letter tokens dropped, so
"T-shirt" reads as "shirt"), uni- and bigrams of the model's own tokens (`huse_edge.tokenizer.tokens`, which keep
them), and character 2-5-grams inside words. With `--model-dir`, the products are labelled with the model's
classes, and its image, text and fused top-1 on the test split are set against each baseline product by product:
the gain of its text tower and of its fused prediction with a 95% interval, and McNemar's exact test on the
products that exactly one of the two gets right. 9–10 minutes on 2 cores, most of it the nine fits.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from huse_edge.catalogue import Columns, LabelledCatalogue
from huse_edge.cli import DEFAULT_CATALOGUE
from huse_edge.evaluation_job import labelled_split, model_inputs
from huse_edge.model_dir import ModelDir
from huse_edge.recipe import TrainConfig
from huse_edge.tokenizer import tokens
from huse_edge.train import load_labelled, predict_outputs

C_GRID = (3.0, 10.0, 30.0)


def _token_ngrams(title: str) -> list[str]:
    words = tokens(title)
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


FEATURES: dict[str, Callable[[], TfidfVectorizer]] = {
    "scikit-learn words, 1-2-grams": lambda: TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
    "model tokens, 1-2-grams": lambda: TfidfVectorizer(analyzer=_token_ngrams, sublinear_tf=True),
    "characters in words, 2-5-grams": lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5),
                                                              sublinear_tf=True),
}


def fit_baseline(make_features: Callable[[], TfidfVectorizer], titles: list[str], labels: np.ndarray,
                 splits: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(C, validation top-1, test predictions) of the C with the best validation top-1."""
    train, val, test = (splits == name for name in ("train", "val", "test"))
    features = make_features().fit(np.asarray(titles)[train]).transform(titles)
    fitted = [LogisticRegression(C=c, max_iter=3000).fit(features[train], labels[train]) for c in C_GRID]
    accuracies = [float(np.mean(classifier.predict(features[val]) == labels[val])) for classifier in fitted]
    best = int(np.argmax(accuracies))  # the first of equals, the smallest C
    return C_GRID[best], accuracies[best], fitted[best].predict(features[test])


def paired_comparison(model_right: np.ndarray, baseline_right: np.ndarray) -> dict:
    """The model's top-1 gain over the baseline on the same products, its 95% interval (normal approximation of
    the paired difference) and McNemar's exact two-sided p-value on the discordant products."""
    n = len(model_right)
    only_model = int(np.sum(model_right & ~baseline_right))
    only_baseline = int(np.sum(~model_right & baseline_right))
    discordant = only_model + only_baseline
    gain = (only_model - only_baseline) / n
    half_width = 1.96 * math.sqrt(max(discordant - (only_model - only_baseline) ** 2 / n, 0.0)) / n
    tail = sum(math.comb(discordant, k) for k in range(min(only_model, only_baseline) + 1))
    p_value = min(1.0, 2 * tail / 2 ** discordant) if discordant else 1.0
    return {"gain": gain, "low": gain - half_width, "high": gain + half_width, "only_model": only_model,
            "only_baseline": only_baseline, "p_value": p_value}


def _model_predictions(model: ModelDir, test: LabelledCatalogue) -> dict[str, np.ndarray]:
    """The model's top-1 class per test product, by modality."""
    outputs = predict_outputs(model.keras_model(), *model_inputs(model, test.products))
    return {"image": outputs["image_logits"].argmax(1), "text": outputs["text_logits"].argmax(1),
            "fused": outputs["fused_probabilities"].argmax(1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalogue", nargs="?", type=Path, default=None,
                        help="default: the model's training catalogue, or the shared catalogue without --model-dir")
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args()
    model = ModelDir.load(args.model_dir) if args.model_dir else None
    with contextlib.redirect_stdout(sys.stderr):  # the catalogue's row reports
        if model is None:  # labelled as `huse-edge train` labels it by default
            _, labelled = load_labelled(args.catalogue or DEFAULT_CATALOGUE, Columns(), TrainConfig(), strict=False)
        else:  # with the model's classes and column settings
            labelled = labelled_split(model, args.catalogue or model.training_catalogue(), "all")
    titles = [p.title for p in labelled.products]
    labels = np.asarray(labelled.labels)
    splits = np.asarray([p.split for p in labelled.products])
    test_labels = labels[splits == "test"]
    print(f"{len(labelled.hierarchy)} classes; products train/val/test: "
          + "/".join(str(int(np.sum(splits == s))) for s in ("train", "val", "test")))

    print("| title-only baseline (TF-IDF + logistic regression) | C | val top-1 | test top-1 |")
    print("| --- | --- | --- | --- |")
    baselines = {}
    for name, make_features in FEATURES.items():
        c, val_accuracy, baselines[name] = fit_baseline(make_features, titles, labels, splits)
        print(f"| {name} | {c:g} | {val_accuracy:.4f} | {np.mean(baselines[name] == test_labels):.4f} |", flush=True)
    if model is None:
        return

    predictions = _model_predictions(model, labelled.split("test"))
    print(f"\nHUSE ({args.model_dir}), test top-1: " + ", ".join(
        f"{modality} {np.mean(predicted == test_labels):.4f}" for modality, predicted in predictions.items()))
    print("\n| HUSE against | modality | gain, points (95% interval) | right only by HUSE / the baseline | "
          "McNemar exact p |")
    print("| --- | --- | --- | --- | --- |")
    for name, baseline in baselines.items():
        for modality in ("text", "fused"):
            r = paired_comparison(predictions[modality] == test_labels, baseline == test_labels)
            print(f"| {name} | {modality} | {100 * r['gain']:+.2f} ({100 * r['low']:+.2f} to {100 * r['high']:+.2f}) "
                  f"| {r['only_model']} / {r['only_baseline']} | {r['p_value']:.2g} |")


if __name__ == "__main__":
    main()
