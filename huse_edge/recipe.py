"""The recipe's settings: the network `huse-edge train` builds, how it trains it, and the quantization-aware
fine-tune of `huse-edge export`, unless told otherwise.

Plain dataclasses, importable without TensorFlow, so that the command line takes its option defaults from them
(one place to change a default) and `huse-edge --help` stays instant. `HuseConfig`, `TrainConfig` and
`LossWeights` are saved in a model directory's `config.json` (`model`, `train`, `loss`) and rebuilt from it by
`evaluate` and `export`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

BACKBONES = ("efficientnet_lite0", "mobilenet_v2", "vgg16", "small_cnn")
# The fine-tune by backbone: its first trained block, and whether the depthwise kernels keep their ImageNet values.
# EfficientNet-Lite0 keeps its stages at 64x48 to 16x12 and its depthwise kernels, whose gradient is a third of a
# fine-tune step on a CPU: the steps saved pay for the 4th and 5th epochs (benchmarks/EXPERIMENTS.md). MobileNetV2
# and VGG16, not measured, keep 3 blocks and train every kernel.
FINETUNE_FROM_BLOCK = {"efficientnet_lite0": 5, "mobilenet_v2": 3, "vgg16": 3}
KEEPS_DEPTHWISE = frozenset({"efficientnet_lite0"})
# What the network returns, in this order: the two universal embeddings, each tower's class logits through the shared
# layer, and the late fusion of those logits.
OUTPUTS = ("image_embedding", "text_embedding", "image_logits", "text_logits", "fused_probabilities")


@dataclass(frozen=True)
class HuseConfig:
    """Everything needed to rebuild the network; round-trips through `to_dict`/`from_dict`."""

    num_classes: int
    vocab_size: int
    max_length: int = 16
    # 256: 128 and 512 were measured against it; over three seeds 128 is level on validation image top-1 and lower on
    # validation fused and test image top-1 (benchmarks/EXPERIMENTS.md, "The embedding dimension and the logit scale")
    embedding_dim: int = 256
    backbone: str = "efficientnet_lite0"
    image_height: int = 128
    image_width: int = 96
    trainable_blocks: int = 2
    image_hidden: int = 512
    text_hidden: int = 512
    token_dim: int = 96
    text_filters: int = 256
    dropout: float = 0.2
    logit_scale: float = 16.0
    fusion_image_weight: float = 0.5  # set from the validation split after training

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "HuseConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class Augmentation:
    """What training batches randomise (see `train._batched`); the default randomises nothing."""

    flip: bool = False
    token_dropout: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """The two training phases' settings (see `train`): cached features, then the backbone fine-tune."""

    epochs: int = 6  # of the cached phase
    batch_size: int = 256  # per replica (see `distribute`)
    learning_rate: float = 1e-3
    patience: int = 5
    seed: int = 0
    class_level: int = -1
    min_class_size: int = 20
    schedule: str = "cosine"  # "cosine": decay to 0 over `epochs`; "constant"
    flip: bool = True  # random horizontal flip of the image input (pixels, or the cached feature map)
    token_dropout: float = 0.0  # share of title tokens replaced by [UNK] in training batches
    weight_average: float = 0.0  # momentum of the weights' moving average that is validated and kept; 0: off
    strategy: str = "none"  # "mirrored" | "multi-worker" (see `distribute`)
    finetune_epochs: int = 5  # backbone fine-tune from pixels after the cached phase; 0: off
    finetune_learning_rate: float = 6e-4
    finetune_batch_size: int = 64  # per replica
    # the fine-tune keeps the stem and the backbone blocks before this one; None: `FINETUNE_FROM_BLOCK`'s
    finetune_from_block: int | None = None
    # the backbone's depthwise kernels keep their ImageNet values in both phases (a fine-tune step is ~25% cheaper);
    # None: whether the backbone is in `KEEPS_DEPTHWISE`
    keep_depthwise: bool | None = None

    @property
    def augmentation(self) -> Augmentation:
        return Augmentation(self.flip, self.token_dropout)

    def for_backbone(self, backbone: str) -> TrainConfig:
        """This config with the backbone's own fine-tune settings filled in, as `config.json` records them."""
        from_block = FINETUNE_FROM_BLOCK.get(backbone, 0) if self.finetune_from_block is None \
            else self.finetune_from_block
        keep = backbone in KEEPS_DEPTHWISE if self.keep_depthwise is None else self.keep_depthwise
        return replace(self, finetune_from_block=from_block, keep_depthwise=keep)


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three HUSE losses (see `loss`) and the graph loss's class-distance threshold."""

    class_level: float = 1.0
    semantic: float = 1.0
    gap: float = 1.0
    threshold: float = 0.8
    label_smoothing: float = 0.0  # of the class-level targets: (1 - e) on the label, e / K spread over all K
    fused: float = 0.0  # weight of the fused cross-entropy (see `loss`), an addition to the paper's three losses

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class QatConfig:
    """The export's quantization-aware fine-tune (`converters.export.qat_finetune`): the three training losses on
    a sample of training products, starting from activation ranges calibrated on the float model."""

    products: int = 2048  # training products sampled for it
    epochs: int = 1
    learning_rate: float = 5e-6  # 2e-5 moved int8 away from float on validation (benchmarks/EXPERIMENTS.md)
    batch_size: int = 32
