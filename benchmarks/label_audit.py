"""Whether the categories `huse-edge classify --catalogue` disputes first are the catalogue's mislabelled products.

    python benchmarks/label_audit.py PREDICTIONS.csv [--top 10 20 50]

No ground truth says which labels are wrong, so this counts a plain sign of one: the product's title names the
predicted article type and not the labelled one (a word check: the leaf's name without spaces, hyphens or a plural
"s", in the title written the same way), and the reverse sign, the title naming the labelled type and not the
predicted one, which points at a model error. Printed for the disputed products in the order the command ranks them
(the least probable category first), over the first N and over all of them.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def _squeezed(text: str) -> str:
    text = text.lower().replace("-", "").replace(" ", "")
    return text[:-1] if text.endswith("s") else text


def names(title: str, path: str) -> bool:
    """Whether the title names the leaf of a `A > B > C` path."""
    return _squeezed(path.split(" > ")[-1]) in title.lower().replace("-", "").replace(" ", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", type=Path)
    parser.add_argument("--top", type=int, nargs="+", default=[10, 20, 50])
    args = parser.parse_args()
    with args.predictions.open(encoding="utf-8", newline="") as stream:
        rows = [row for row in csv.DictReader(stream) if row["agrees"] == "no"]
    rows.sort(key=lambda r: (float(r["category_probability"]), -float(r["probability_1"])))
    print(f"{len(rows)} disputed categories")
    print(f"{'disputes':>12} {'title names the prediction':>28} {'title names the label':>23}")
    for count in [*args.top, len(rows)]:
        first = rows[:count]
        prediction = sum(names(r["title"], r["prediction_1"]) and not names(r["title"], r["category"]) for r in first)
        label = sum(names(r["title"], r["category"]) and not names(r["title"], r["prediction_1"]) for r in first)
        print(f"{'first ' + str(len(first)):>12} {prediction:>28} {label:>23}")


if __name__ == "__main__":
    main()
