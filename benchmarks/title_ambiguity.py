"""How far a catalogue's own labels let any title-only classifier go: products whose titles tokenise identically
but carry different classes.

    python benchmarks/title_ambiguity.py [CATALOGUE] [--top 15]

For every group of products with the same token sequence (the model's tokenizer, so the text tower cannot tell
them apart either), the best any title-only classifier can do is predict the group's majority class; the rest
are forced errors. Prints the forced-error rate over the catalogue and per split, the class pairs they fall
between, and the most contradictory titles. The image must settle those products, and where the photos agree
with the title rather than the label, nothing can.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

from huse_edge.catalogue import label, read_catalogue
from huse_edge.cli import DEFAULT_CATALOGUE
from huse_edge.tokenizer import tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalogue", nargs="?", type=Path, default=DEFAULT_CATALOGUE)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    labelled = label(read_catalogue(args.catalogue), min_class_size=20)
    titles = [tuple(tokens(product.title)) for product in labelled.products]
    groups: dict[tuple, collections.Counter] = collections.defaultdict(collections.Counter)
    for title, cls in zip(titles, labelled.labels):
        groups[title][cls] += 1

    majorities = {title: classes.most_common(1)[0] for title, classes in groups.items()}  # (class, products)

    def leaf(cls: int) -> str:
        return labelled.hierarchy.paths[cls][-1]

    def forced(title: tuple) -> int:
        return sum(groups[title].values()) - majorities[title][1]

    forced_by_split: collections.Counter = collections.Counter()
    size_by_split = collections.Counter(p.split for p in labelled.products)
    pairs: collections.Counter = collections.Counter()
    for product, title, cls in zip(labelled.products, titles, labelled.labels):
        if cls != majorities[title][0]:
            forced_by_split[product.split] += 1
            pairs[(leaf(cls), leaf(majorities[title][0]))] += 1
    total = sum(forced_by_split.values())
    print(f"{len(labelled.products)} products, {len(groups)} distinct titles, "
          f"{sum(len(c) > 1 for c in groups.values())} titles carry more than one class")
    print(f"forced title-only errors: {total} ({total / len(labelled.products):.2%}); ceiling of text-only top-1 "
          + ", ".join(f"{s} {1 - forced_by_split[s] / size_by_split[s]:.4f}" for s in ("train", "val", "test")))
    print("class (label) -> class (majority of the same title): products")
    for (true, majority), count in pairs.most_common(args.top):
        print(f"  {true} -> {majority}: {count}")
    print("most contradictory titles:")
    mixed = sorted((title for title, classes in groups.items() if len(classes) > 1), key=lambda t: -forced(t))
    for title in mixed[: args.top]:
        print(f"  {' '.join(title)!r}: " + ", ".join(f"{leaf(c)} {n}" for c, n in groups[title].most_common()))


if __name__ == "__main__":
    main()
