import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from huse_edge.tokenizer import PAD_ID, UNK_ID, Tokenizer, TokenizerError, TokenizerSpec, tokens

import pytest


def test_spec_normalisation_and_splitting():
    assert tokens("Nike Men's AIR-Max 270, Blue") == ["nike", "men", "s", "air", "max", "270", "blue"]
    assert tokens("ＮＩＫＥ ﬁt") == ["nike", "fit"]  # NFKC folds full-width letters and ligatures
    assert tokens("Café Crème") == ["caf", "cr", "me"]  # non-ASCII letters separate tokens
    assert tokens("  \t ") == []


def test_ids_oov_padding_and_truncation():
    tok = Tokenizer.build(["red shirt", "red shoe", "blue shirt", "red"], TokenizerSpec(max_length=4, min_count=2))
    assert tok.vocab == ["[PAD]", "[UNK]", "red", "shirt"]
    assert tok.encode("Red SHIRT green").tolist() == [2, 3, UNK_ID, PAD_ID]
    assert tok.encode("red red red red red").tolist() == [2, 2, 2, 2]
    assert tok.encode_batch(["", "shirt"]).dtype == np.int32


def test_save_load_roundtrip(tmp_path):
    tok = Tokenizer.build(["a b c", "a b", "a"], TokenizerSpec(max_length=5, min_count=1))
    tok.save(tmp_path)
    assert (tmp_path / "vocab.txt").read_text().splitlines()[:2] == ["[PAD]", "[UNK]"]
    again = Tokenizer.load(tmp_path)
    assert again.vocab == tok.vocab and again.spec == tok.spec


def test_bad_vocabulary_is_refused(tmp_path):
    Tokenizer.build(["x y"], TokenizerSpec(min_count=1)).save(tmp_path)
    (tmp_path / "vocab.txt").write_text("x\ny\n")
    with pytest.raises(TokenizerError, match="must start with"):
        Tokenizer.load(tmp_path)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_fixed_length_valid_ids(text):
    tok = Tokenizer.build(["red shirt blue shoe", "red shirt"], TokenizerSpec(max_length=8, min_count=1))
    ids = tok.encode(text)
    assert ids.shape == (8,) and ids.dtype == np.int32
    assert ids.min() >= 0 and ids.max() < len(tok)
    n = min(len(tokens(text)), 8)
    assert (ids[:n] != PAD_ID).all() and (ids[n:] == PAD_ID).all()
