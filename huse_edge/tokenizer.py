"""Title tokenizer: a plain-text vocabulary and a rule set small enough to re-implement token for token.

Specification (version 1), applied to a title string:
1. Unicode NFKC normalisation.
2. Lower-case the ASCII letters A-Z (no other case mapping, so every platform agrees).
3. Tokens are the maximal runs of the ASCII characters [a-z0-9]; every other character separates tokens.
4. Each token maps to its line number (0-based) in `vocab.txt`; line 0 is the padding token `[PAD]` (id 0),
   line 1 the out-of-vocabulary token `[UNK]` (id 1). Unknown tokens map to 1.
5. The id sequence is truncated to `max_length` and right-padded with 0 to exactly `max_length` int32 ids.
The vocabulary holds training-title tokens seen at least `min_count` times, most frequent first, ties broken by
the token's code-point order, at most `max_size` lines in all.
"""

from __future__ import annotations

import collections
import json
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from huse_edge.atomic import write_text

SPEC_VERSION = 1
PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1
_TOKEN = re.compile(r"[a-z0-9]+")
_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class TokenizerError(ValueError):
    """A vocabulary or tokenizer spec that cannot be used."""


@dataclass(frozen=True)
class TokenizerSpec:
    max_length: int = 16
    min_count: int = 2
    max_size: int = 20000
    version: int = SPEC_VERSION


def tokens(text: str) -> list[str]:
    """Steps 1-3 of the specification."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).translate(_UPPER))


class Tokenizer:
    """Maps titles to fixed-length int32 id sequences."""

    def __init__(self, vocab: list[str], spec: TokenizerSpec = TokenizerSpec()):
        if vocab[:2] != [PAD, UNK]:
            raise TokenizerError(f"vocabulary must start with {PAD} and {UNK}")
        if len(set(vocab)) != len(vocab):
            raise TokenizerError("vocabulary has duplicate tokens")
        self.vocab = list(vocab)
        self.spec = spec
        self._ids = {token: i for i, token in enumerate(vocab)}

    @classmethod
    def build(cls, titles: Iterable[str], spec: TokenizerSpec = TokenizerSpec()) -> "Tokenizer":
        counts = collections.Counter(t for title in titles for t in tokens(title))
        kept = sorted((t for t, c in counts.items() if c >= spec.min_count), key=lambda t: (-counts[t], t))
        return cls([PAD, UNK] + kept[: spec.max_size - 2], spec)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        ids = [self._ids.get(t, UNK_ID) for t in tokens(text)][: self.spec.max_length]
        out = np.full(self.spec.max_length, PAD_ID, dtype=np.int32)
        out[: len(ids)] = ids
        return out

    def encode_batch(self, texts: Iterable[str]) -> np.ndarray:
        rows = [self.encode(t) for t in texts]
        return np.stack(rows) if rows else np.zeros((0, self.spec.max_length), np.int32)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        write_text(directory / "vocab.txt", "".join(t + "\n" for t in self.vocab))
        write_text(directory / "tokenizer.json", json.dumps(asdict(self.spec), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "Tokenizer":
        directory = Path(directory)
        try:
            raw = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
            spec = TokenizerSpec(**raw)
            vocab = (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")
        except (OSError, ValueError, TypeError) as error:
            raise TokenizerError(f"{directory}: unreadable tokenizer ({error})") from None
        if vocab and vocab[-1] == "":
            vocab.pop()
        if spec.version != SPEC_VERSION:
            raise TokenizerError(f"{directory}: tokenizer spec version {spec.version}, expected {SPEC_VERSION}")
        if spec.max_length < 1:
            raise TokenizerError(f"{directory}: max_length must be positive")
        return cls(vocab, spec)
