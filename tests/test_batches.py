"""Training batches: seeded augmentation that repeats exactly and does what it says."""

import numpy as np

from huse_edge.recipe import Augmentation
from huse_edge.tokenizer import PAD_ID, UNK_ID
from huse_edge.train import training_batches


def _batches(augmentation, seed=0):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(64, 4, 3, 8)).astype(np.float16)
    tokens = rng.integers(2, 500, (64, 16)).astype(np.int32)
    tokens[:, 10:] = PAD_ID
    data = training_batches(features, tokens, np.zeros(64), 16, False, seed, augmentation)
    return features, tokens, [(b[0][0].numpy(), b[0][1].numpy()) for b in data]


def test_token_dropout_replaces_that_share_of_real_tokens_by_unk_and_repeats_with_the_seed():
    _, tokens, batches = _batches(Augmentation(token_dropout=0.2))
    ids = np.concatenate([b[1] for b in batches])
    dropped = (ids == UNK_ID) & (tokens != UNK_ID)
    assert np.array_equal(ids[~dropped], tokens[~dropped])  # nothing else changes
    assert not dropped[:, 10:].any()  # padding stays padding
    assert 0.15 < dropped[:, :10].mean() < 0.25
    again = np.concatenate([b[1] for b in _batches(Augmentation(token_dropout=0.2))[2]])
    other_seed = np.concatenate([b[1] for b in _batches(Augmentation(token_dropout=0.2), seed=1)[2]])
    assert np.array_equal(ids, again) and not np.array_equal(ids, other_seed)


def test_flip_mirrors_some_feature_maps_and_no_augmentation_changes_nothing():
    features, tokens, plain = _batches(Augmentation())
    assert np.array_equal(np.concatenate([b[0] for b in plain]), features.astype(np.float32))
    assert np.array_equal(np.concatenate([b[1] for b in plain]), tokens)
    flipped = np.concatenate([b[0] for b in _batches(Augmentation(flip=True))[2]])
    mirrored = np.array([np.array_equal(f, x[:, ::-1].astype(np.float32)) for f, x in zip(flipped, features)])
    kept = np.array([np.array_equal(f, x.astype(np.float32)) for f, x in zip(flipped, features)])
    assert np.all(mirrored | kept) and 0.25 < mirrored.mean() < 0.75


def test_shuffled_batches_keep_each_products_image_tokens_and_label_together_and_visit_every_row_once():
    rows = np.arange(100)
    features = np.broadcast_to(rows[:, None, None, None], (100, 4, 3, 2)).astype(np.float16)
    mirrored = -features
    tokens = np.broadcast_to(rows[:, None] + 2, (100, 16)).astype(np.int32)
    data = training_batches((features, mirrored), tokens, rows, 32, True, 0, Augmentation(flip=True))
    epochs = []
    for _ in range(2):
        batches = list(data)
        images = np.concatenate([b[0][0].numpy() for b in batches])
        labels = np.concatenate([b[1].numpy() for b in batches])
        assert np.array_equal(np.abs(images[:, 0, 0, 0]), labels)  # the view (or its mirror) of that row
        assert np.array_equal(np.concatenate([b[0][1].numpy() for b in batches])[:, 0], labels + 2)
        assert 0.25 < (images[:, 0, 0, 0] < 0).mean() < 0.75  # the mirrored view for about half
        assert np.array_equal(np.sort(labels), rows)
        epochs.append(labels)
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[0], rows)
