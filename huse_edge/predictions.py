"""`huse-edge classify --catalogue`: every product of a catalogue classified on the edge bundle, written as a CSV,
and the catalogue's labels the model disputes.

A catalogue's owner wants two things from it: categories for products that have none yet, and a review list for
the ones that have: the categories the model rejects most confidently are, on the shared catalogue, mostly labelling
slips (README, "Classifying a catalogue"), so the list starts with them.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from huse_edge.atomic import write_text
from huse_edge.catalogue import Product
from huse_edge.evaluate import CONFIDENT
from huse_edge.hierarchy import SEPARATOR
from huse_edge.pixels import pixel_batches
from huse_edge.runtime import HuseRuntime


@dataclass(frozen=True)
class Prediction:
    product: Product
    top: list[dict]  # `HuseRuntime.top_k` of the fused probabilities
    label: int | None  # the model's class the product's category names; None: no category, or one not learnt
    label_probability: float | None  # the fused probability of that class

    @property
    def agrees(self) -> bool | None:
        return None if self.label is None else self.top[0]["class_id"] == self.label


def model_class(path: tuple[str, ...], classes: dict[tuple[str, ...], int]) -> int | None:
    """The class a category path names: the path itself or, for a model trained at a higher level of the hierarchy
    (`--class-level`), its longest prefix that is a class."""
    return next((classes[path[:depth]] for depth in range(len(path), 0, -1) if path[:depth] in classes), None)


def classify_catalogue(runtime: HuseRuntime, products: Sequence[Product], top_k: int, batch_size: int = 64,
                       progress: Callable[[int], None] | None = None) -> list[Prediction]:
    """Each product's photo and title through the bundle's `classify_product`, the photos decoded on every core."""
    classes = runtime.bundle.hierarchy.index()
    height, width = runtime.bundle.image_height, runtime.bundle.image_width
    predictions = []
    for start, pixels in zip(range(0, len(products), batch_size),
                             pixel_batches([p.image for p in products], height, width, batch_size)):
        batch = products[start: start + batch_size]
        probabilities = runtime.classify_product(pixels, [p.title for p in batch])
        for product, row, top in zip(batch, probabilities, runtime.top_k(probabilities, top_k)):
            label = model_class(product.path, classes)
            predictions.append(Prediction(product, top, label, None if label is None else float(row[label])))
        if progress:
            progress(len(batch))
    return predictions


def disputed(predictions: Sequence[Prediction]) -> list[Prediction]:
    """The labelled products whose top prediction is another class, the least probable labels first (the most
    probable prediction first among equals, then catalogue order)."""
    wrong = [p for p in predictions if p.agrees is False]
    return sorted(wrong, key=lambda p: (p.label_probability, -p.top[0]["score"], p.product.row))


def write_predictions(predictions: Sequence[Prediction], path: str | Path, top_k: int) -> None:
    """A CSV with one row per product in catalogue order: id, title, category, whether the top prediction agrees
    with it (empty without a category the model learnt), the category's probability, then the k best classes."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "title", "category", "agrees", "category_probability",
                     *(f"{name}_{rank}" for rank in range(1, top_k + 1) for name in ("prediction", "probability"))])
    for p in predictions:
        ranked = [value for entry in p.top for value in (SEPARATOR.join(entry["path"]), f"{entry['score']:.4f}")]
        writer.writerow([p.product.id, p.product.title, SEPARATOR.join(p.product.path),
                         "" if p.agrees is None else "yes" if p.agrees else "no",
                         "" if p.label_probability is None else f"{p.label_probability:.4f}",
                         *ranked, *[""] * (2 * top_k - len(ranked))])
    write_text(path, out.getvalue())


def summary(predictions: Sequence[Prediction], shown: int = 10) -> dict:
    """Counts, agreement with the catalogue's labels, and the `shown` most confident disputes."""
    labelled = [p for p in predictions if p.label is not None]
    agreeing = sum(bool(p.agrees) for p in labelled)
    confident = [p for p in predictions if p.top[0]["score"] >= CONFIDENT]
    return {
        "products": len(predictions),
        "labelled": len(labelled),
        "unlabelled": sum(not p.product.path for p in predictions),
        "unknown_category": sum(bool(p.product.path) and p.label is None for p in predictions),
        "agreeing": agreeing,
        "agreement": agreeing / len(labelled) if labelled else None,
        "confident": len(confident),
        "confident_labelled": sum(p.label is not None for p in confident),
        "confident_agreeing": sum(bool(p.agrees) for p in confident),  # agrees is None without a label
        "disputed": [{"id": p.product.id, "title": p.product.title, "category": list(p.product.path),
                      "category_probability": p.label_probability, "prediction": p.top[0]["path"],
                      "probability": p.top[0]["score"]} for p in disputed(predictions)[:shown]],
    }


def summary_lines(report: dict, classes: int) -> list[str]:
    lines = [f"{report['products']} products classified; {report['labelled']} with a category among the model's "
             f"{classes} classes, {report['unknown_category']} with another category, {report['unlabelled']} "
             "without one"]
    lines.append(f"{report['confident']} predicted at probability >= {CONFIDENT}, "
                 f"{report['products'] - report['confident']} below it: check those before using their predictions")
    if report["labelled"]:
        lines.append(f"the top prediction agrees with {report['agreeing']} of the {report['labelled']} categories "
                     f"({100 * report['agreement']:.2f}%)" + _agreement_by_confidence(report))
    if report["disputed"]:
        lines.append(f"disputed categories, least probable first ({len(report['disputed'])} of "
                     f"{report['labelled'] - report['agreeing']} shown):")
        lines += [f"  {d['id']} {d['title']!r}: {SEPARATOR.join(d['category'])} ({d['category_probability']:.4f}), "
                  f"predicted {SEPARATOR.join(d['prediction'])} ({d['probability']:.4f})" for d in report["disputed"]]
    return lines


def _agreement_by_confidence(report: dict) -> str:
    """Agreement of the predictions made at probability >= CONFIDENT and of the others: where the review pays."""
    above = (report["confident_agreeing"], report["confident_labelled"])
    below = (report["agreeing"] - above[0], report["labelled"] - above[1])
    return "".join(f"; {agreeing} of {total} ({100 * agreeing / total:.2f}%) {where} {CONFIDENT}"
                   for (agreeing, total), where in ((above, "at probability >="), (below, "below")) if total)
