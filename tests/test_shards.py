"""Sharded catalogues: `huse-edge data shard` writes TFRecord files that `huse-edge train` streams."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from huse_edge.cli import main


@pytest.fixture(scope="module")
def shards(slice_catalogue, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "slice"
    result = CliRunner().invoke(main, ["data", "shard", str(slice_catalogue), "--out", str(out), "--files", "3"])
    assert result.exit_code == 0, result.output
    return out


def test_shards_hold_every_product_once_with_its_photo_bytes(shards, slice_catalogue):
    from huse_edge.catalogue import read_catalogue
    from huse_edge.shards import read_shard_catalogue, shard_files, stream_images
    from huse_edge.transform import preprocess

    source = read_catalogue(slice_catalogue)
    streamed = read_shard_catalogue(shards)
    manifest = json.loads((shards / "shards.json").read_text())
    assert manifest["products"] == len(source.products) == len(streamed.products)
    assert [f["products"] for f in manifest["files"]] == [107, 107, 106]
    by_id = {p.id: p for p in source.products}
    assert {p.id for p in streamed.products} == set(by_id)
    for product in streamed.products:
        original = by_id[product.id]
        assert (product.title, product.path) == (original.title, original.path)
    # decoded from the shard bytes exactly as from the file
    for product_id, pixels in stream_images(shard_files(shards), 128, 96).take(5).as_numpy_iterator():
        expected = preprocess(by_id[product_id.decode()].image, 128, 96)
        assert np.array_equal(pixels, expected)


def test_bad_shard_directories_are_refused(shards, tmp_path):
    from huse_edge.catalogue import CatalogueError
    from huse_edge.shards import read_shard_catalogue

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "shards.json").write_text((shards / "shards.json").read_text())
    with pytest.raises(CatalogueError, match="shard file\\(s\\) missing: products-00000-of-00003.tfrecord"):
        read_shard_catalogue(broken)
    (broken / "shards.json").write_text("{not json")
    with pytest.raises(CatalogueError, match="unreadable shard manifest"):
        read_shard_catalogue(broken)


def test_training_streams_from_shards(shards, slice_catalogue, tmp_path):
    """A real training run reads the shards (photos decoded on the fly, the frozen backbone inside the network);
    its model evaluates on the source CSV with the metrics it recorded."""
    from huse_edge.evaluation_job import evaluate_model_dir
    from huse_edge.recipe import TrainConfig
    from huse_edge.train import train

    out = tmp_path / "model"
    metrics = train(shards, out, {"trainable_blocks": 1, "embedding_dim": 64, "image_hidden": 128,
                                  "text_hidden": 128, "text_filters": 64, "token_dim": 32},
                    TrainConfig(epochs=3, batch_size=32, patience=3, min_class_size=5))
    assert not (out / "cache").exists()  # nothing cached: streamed
    again = evaluate_model_dir(out, slice_catalogue)
    assert again["products"] == metrics["products"]
    for key in ("image_top1", "text_top1", "fused_top1"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-9), key
    assert metrics["text_top1"] > 0.5 and metrics["image_top1"] > 0.5  # 8 classes: it learnt from the stream
