"""EfficientNet-Lite0 in Keras 2, built from plain layers so it survives QAT and full-int8 conversion.

The Lite variant is the edge-friendly EfficientNet: ReLU6 instead of swish, no squeeze-and-excitation, stem and
head fixed at 32 and 1280 channels. Layers are created once and kept by name, so the same weights can be wired
into several graphs: the bottom part that precomputes cached features, the top part trained on those features,
and the flat full image tower that is exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from huse_edge._tf import keras, tf


@dataclass(frozen=True)
class BlockSpec:
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


# (repeats, kernel, stride, expand ratio, output channels) of the seven stages of EfficientNet-B0/Lite0.
_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3
# EfficientNet-Lite was trained on pixels mapped with (x - 127) / 128.
INPUT_MEAN = 127.0
INPUT_STD = 128.0


def block_specs() -> list[BlockSpec]:
    """The 16 MBConv blocks, in order."""
    specs, channels = [], STEM_CHANNELS
    for repeats, kernel, stride, expand, out in _STAGES:
        for r in range(repeats):
            specs.append(BlockSpec(kernel, stride if r == 0 else 1, expand, channels, out))
            channels = out
    return specs


NUM_BLOCKS = len(block_specs())


class EfficientNetLite0:
    """Holds the backbone's layers and applies any contiguous part of the network to a tensor."""

    def __init__(self, name: str = "effnet"):
        self.name = name
        self._layers: dict[str, keras.layers.Layer] = {}
        self.specs = block_specs()

    def _layer(self, key: str, factory) -> keras.layers.Layer:
        if key not in self._layers:
            self._layers[key] = factory(f"{self.name}_{key}")
        return self._layers[key]

    def _conv_bn(self, x, key: str, filters: int, kernel: int, stride: int, relu: bool, depthwise: bool = False):
        if depthwise:
            conv = self._layer(f"{key}_dwconv", lambda n: keras.layers.DepthwiseConv2D(
                kernel, strides=stride, padding="same", use_bias=False, name=n))
        else:
            conv = self._layer(f"{key}_conv", lambda n: keras.layers.Conv2D(
                filters, kernel, strides=stride, padding="same", use_bias=False, name=n))
        bn = self._layer(f"{key}_bn", lambda n: keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=n))
        x = bn(conv(x))
        if relu:
            x = self._layer(f"{key}_relu6", lambda n: keras.layers.ReLU(6.0, name=n))(x)
        return x

    def stem(self, x: tf.Tensor) -> tf.Tensor:
        return self._conv_bn(x, "stem", STEM_CHANNELS, 3, 2, relu=True)

    def blocks(self, x: tf.Tensor, start: int = 0, stop: int = NUM_BLOCKS) -> tf.Tensor:
        for index in range(start, stop):
            spec, key = self.specs[index], f"block{index}"
            shortcut = x
            if spec.expand != 1:
                x = self._conv_bn(x, f"{key}_expand", spec.in_channels * spec.expand, 1, 1, relu=True)
            x = self._conv_bn(x, f"{key}_dw", 0, spec.kernel, spec.stride, relu=True, depthwise=True)
            x = self._conv_bn(x, f"{key}_project", spec.out_channels, 1, 1, relu=False)
            if spec.stride == 1 and spec.in_channels == spec.out_channels:
                x = self._layer(f"{key}_add", lambda n: keras.layers.Add(name=n))([shortcut, x])
        return x

    def head(self, x: tf.Tensor) -> tf.Tensor:
        """1x1 conv to 1280 channels and global average pooling: the image feature vector."""
        x = self._conv_bn(x, "head", HEAD_CHANNELS, 1, 1, relu=True)
        return self._layer("pool", lambda n: keras.layers.GlobalAveragePooling2D(name=n))(x)

    def __call__(self, x: tf.Tensor, start: int = 0) -> tf.Tensor:
        """Applies blocks `start..end` and the head; `start=0` includes the stem."""
        if start == 0:
            x = self.stem(x)
        return self.head(self.blocks(x, start))

    def layers(self) -> Iterator[tuple[str, keras.layers.Layer]]:
        """(key, layer) for every weighted layer created so far, keys as used by the weight importer."""
        return iter(self._layers.items())
