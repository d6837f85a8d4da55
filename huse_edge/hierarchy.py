"""Class hierarchy (category paths) and the class-embedding space that the HUSE graph loss follows.

Tree distance between two classes with root-to-leaf paths a and b of depth L:

    d(a, b) = 1 - lcp(a, b) / L

where lcp is the length of the common prefix: 0 for the same class, 1/3 for siblings under the same
sub-category, 2/3 for classes sharing only the master category, 1 for unrelated classes (L = 3). It is exactly
the cosine distance between class embeddings built as the concatenation of one one-hot vector per level, each
scaled by 1/sqrt(L): the dot product of two such embeddings counts the shared levels. A user-supplied class
embedding matrix (K x E) can replace them; its cosine distances are used the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

SEPARATOR = " > "


@dataclass(frozen=True)
class LabelHierarchy:
    """Classes (index = class id) with their full root-to-leaf category paths."""

    paths: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        depths = {len(p) for p in self.paths}
        if len(depths) > 1:
            raise ValueError(f"all category paths must have the same depth, got depths {sorted(depths)}")
        if len(set(self.paths)) != len(self.paths):
            raise ValueError("duplicate class paths")

    @classmethod
    def from_paths(cls, paths: Iterable[Sequence[str]]) -> "LabelHierarchy":
        """Sorted, so that the class ids do not depend on catalogue row order."""
        return cls(tuple(sorted({tuple(p) for p in paths})))

    @property
    def depth(self) -> int:
        return len(self.paths[0])

    @property
    def names(self) -> list[str]:
        return [p[-1] for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def index(self) -> dict[tuple[str, ...], int]:
        return {p: i for i, p in enumerate(self.paths)}

    def level_ids(self, level: int) -> np.ndarray:
        """For each class, the id of its ancestor at `level` (0 = root level) among that level's sorted names."""
        prefixes = sorted({p[: level + 1] for p in self.paths})
        lookup = {p: i for i, p in enumerate(prefixes)}
        return np.array([lookup[p[: level + 1]] for p in self.paths], dtype=np.int64)

    def class_embeddings(self) -> np.ndarray:
        """One scaled one-hot block per level; cosine distance between rows equals the tree distance."""
        blocks = []
        for level in range(self.depth):
            ids = self.level_ids(level)
            blocks.append(np.eye(ids.max() + 1, dtype=np.float32)[ids])
        return np.concatenate(blocks, axis=1) / np.sqrt(self.depth, dtype=np.float32)

    def save(self, path: str | Path) -> None:
        from huse_edge.atomic import write_text

        write_text(path, "".join(SEPARATOR.join(p) + "\n" for p in self.paths))

    @classmethod
    def load(cls, path: str | Path) -> "LabelHierarchy":
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return cls(tuple(tuple(line.split(SEPARATOR)) for line in lines if line))


class ClassEmbeddingsError(ValueError):
    """A user's class-embedding matrix that cannot stand in for the hierarchy's distances."""


def user_class_distances(embeddings: np.ndarray, classes: int) -> np.ndarray:
    """`cosine_distances` of a user's matrix (`--class-embeddings`), checked first: one finite, non-zero row per
    class, in labels.txt order. Unchecked, a wrong row count fails inside a training step, minutes later."""
    if embeddings.ndim != 2 or embeddings.shape[0] != classes or not np.issubdtype(embeddings.dtype, np.number):
        raise ClassEmbeddingsError(f"class embeddings: expected a ({classes}, dims) number matrix, one row per class "
                                   f"in labels.txt order; got {embeddings.dtype} of shape {embeddings.shape}")
    if not np.all(np.isfinite(embeddings)):
        raise ClassEmbeddingsError("class embeddings: NaN or infinite values")
    if np.any(np.linalg.norm(embeddings, axis=1) == 0):
        raise ClassEmbeddingsError("class embeddings: an all-zero row has no direction, so no cosine distance")
    return cosine_distances(embeddings)


def cosine_distances(embeddings: np.ndarray) -> np.ndarray:
    """Pairwise cosine distance 1 - cos(a, b) between the rows of a class-embedding matrix."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("class embeddings must not contain all-zero rows")
    unit = embeddings / norms
    return np.clip(1.0 - unit @ unit.T, 0.0, 2.0).astype(np.float32)
