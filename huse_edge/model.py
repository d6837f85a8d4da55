"""HUSE: an image tower and a text tower, each ending in D units + L2 normalisation, and one shared
classification layer applied to both embeddings.

`build_huse` returns three views of one set of layers:
- `inference`: pixels (0..255) + int32 tokens -> embeddings, per-modality logits and fused probabilities
  (the model that is saved, evaluated and exported);
- `feature_extractor`: pixels -> the frozen backbone output that is cached once per catalogue (None when the
  backbone trains from pixels);
- `trainable`: cached features + tokens -> the same outputs; what `fit` optimises.

`HuseModel.split_at(block)` gives more views for the fine-tune, which keeps the backbone's stem and first
blocks frozen (`SplitViews`): pixels -> the output of the blocks before `block`, and that output + tokens -> the
same outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from huse_edge._tf import keras
from huse_edge.backbones import build_backbone
from huse_edge.layers import FusedProbabilities, L2Normalize
from huse_edge.recipe import OUTPUTS, HuseConfig


def as_output_dict(outputs: dict | list) -> dict:
    """Model outputs as a dict keyed by `OUTPUTS` (QAT copies of the model return them as a list)."""
    return outputs if isinstance(outputs, dict) else dict(zip(OUTPUTS, outputs))


@dataclass(frozen=True)
class SplitViews:
    """Views of a model split before a backbone block, sharing its layers."""

    early: keras.Model  # pixels -> output of the frozen blocks before the split
    finetune: keras.Model  # that output + tokens -> the model's outputs
    # pixels -> [that output, the feature extractor's output]: one pass computes both, bit for bit what the two
    # models compute apart; None when the split lies above the extractor's part of the backbone
    early_and_features: keras.Model | None


@dataclass
class HuseModel:
    config: HuseConfig
    inference: keras.Model
    trainable: keras.Model
    feature_extractor: keras.Model | None
    backbone_source: str
    _split: Callable[[int], SplitViews | None] = lambda block: None

    def split_at(self, block: int) -> SplitViews | None:
        """The views of this model split before backbone block `block`; None when the backbone cannot be split
        there (Keras applications, block 0)."""
        return self._split(block)


def _mlp_head(name: str, hidden: int, dim: int, dropout: float):
    layers = [keras.layers.Dropout(dropout, name=f"{name}_dropout0"),
              keras.layers.Dense(hidden, activation="relu", name=f"{name}_hidden"),
              keras.layers.Dropout(dropout, name=f"{name}_dropout1"),
              keras.layers.Dense(dim, name=f"{name}_projection"),
              L2Normalize(name=f"{name}_embedding")]

    def apply(x):
        for layer in layers:
            x = layer(x)
        return x

    return apply


def _text_encoder(config: HuseConfig):
    """Token embedding + 1-D convolution + global max pooling: a fast, int8-friendly title encoder."""
    embed = keras.layers.Embedding(config.vocab_size, config.token_dim, name="token_embedding")
    conv = keras.layers.Conv1D(config.text_filters, 3, padding="same", activation="relu", name="text_conv")
    pool = keras.layers.GlobalMaxPooling1D(name="text_pool")
    return lambda tokens: pool(conv(embed(tokens)))


def _shared_classifier(config: HuseConfig):
    """One Dense layer applied to both modalities. Its input, a unit vector, is first scaled by a constant
    (cosine-softmax style): without it the logits of unit-norm inputs start tiny and cross-entropy learns slowly."""
    scale = keras.layers.Rescaling(config.logit_scale, name="logit_scale")
    dense = keras.layers.Dense(config.num_classes, name="shared_classifier")
    return lambda embedding: dense(scale(embedding))


def _outputs(image_features, tokens, image_head, text_encoder, text_head, classifier, fusion):
    image_embedding = image_head(image_features)
    text_embedding = text_head(text_encoder(tokens))
    image_logits = classifier(image_embedding)
    text_logits = classifier(text_embedding)
    fused = fusion([image_logits, text_logits])
    return dict(zip(OUTPUTS, (image_embedding, text_embedding, image_logits, text_logits, fused)))


def build_huse(config: HuseConfig, backbone_weights: str | Path | None = None,
               use_pretrained: bool = True) -> HuseModel:
    parts = build_backbone(config.backbone, config.trainable_blocks, backbone_weights, use_pretrained)
    image_head = _mlp_head("image", config.image_hidden, config.embedding_dim, config.dropout)
    text_head = _mlp_head("text", config.text_hidden, config.embedding_dim, config.dropout)
    text_encoder = _text_encoder(config)
    classifier = _shared_classifier(config)

    # Pixel values 0..255 as float32: a full-int8 conversion then turns this input into uint8 with scale ~1.
    pixels = keras.Input((config.image_height, config.image_width, 3), dtype="float32", name="image")
    tokens = keras.Input((config.max_length,), dtype="int32", name="tokens")
    cached = parts.bottom(pixels) if parts.bottom else pixels
    # one fusion layer for every view: the image weight tuned after training is then the weight of each of them
    fusion = FusedProbabilities(config.fusion_image_weight, name="fused")
    heads = (image_head, text_encoder, text_head, classifier, fusion)
    inference = keras.Model([pixels, tokens], _outputs(parts.top(cached), tokens, *heads), name="huse")

    features = keras.Input(cached.shape[1:], dtype=cached.dtype, name="image_features")
    trainable = keras.Model([features, tokens], _outputs(parts.top(features), tokens, *heads), name="huse_train")
    extractor = keras.Model(pixels, cached, name="huse_features") if parts.bottom else None

    def split(block: int) -> SplitViews | None:
        halves = parts.split_at(block) if parts.pretrained else None
        if halves is None:
            return None
        early = halves.bottom(pixels)
        early_input = keras.Input(early.shape[1:], dtype=early.dtype, name="image_features")
        both = keras.Model(pixels, [early, halves.to_cached(early)], name="huse_early_and_features") \
            if halves.to_cached is not None else None
        return SplitViews(keras.Model(pixels, early, name="huse_early_features"),
                          keras.Model([early_input, tokens], _outputs(halves.top(early_input), tokens, *heads),
                                      name="huse_finetune"), both)

    parts.load_weights()
    if parts.pretrained:  # fine-tune the top blocks with frozen batch statistics, as is usual for small batches
        frozen = extractor.layers if extractor is not None else []
        for layer in [*frozen, *trainable.layers]:
            if layer in frozen or isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return HuseModel(config, inference, trainable, extractor, parts.source, split)
