"""Training: catalogue -> cached backbone features + tokens -> HUSE towers trained on the three losses.

Kept apart from the library modules (model, loss, features) as in open_clip: this is the job, they are the parts.
Interrupted runs resume from `OUT/checkpoints/backup` (Keras BackupAndRestore: weights, optimizer, epoch); the
best epoch on the validation split (mean of image-only and text-only top-1, see `EpochLog`) is kept in
`OUT/checkpoints/best` and is what gets saved. The learning rate follows a cosine decay over `epochs`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from huse_edge import __version__
from huse_edge._tf import keras, tf
from huse_edge.catalogue import Catalogue, Columns, LabelledCatalogue, label, read_catalogue
from huse_edge.distribute import is_chief, make_strategy, shard_by_data
from huse_edge.evaluate import best_fusion_weight, evaluate_outputs, format_metrics
from huse_edge.features import cached_features, load_pixels
from huse_edge.hierarchy import cosine_distances
from huse_edge.loss import COMPONENTS, HuseLoss, LossWeights, global_values
from huse_edge.model import OUTPUTS, HuseConfig, HuseModel, as_output_dict, build_huse
from huse_edge.model_dir import save_model_dir
from huse_edge.shards import is_shard_dir, read_shard_catalogue, shard_files, stream_images
from huse_edge.tokenizer import PAD_ID, UNK_ID, Tokenizer, TokenizerSpec

MODALITIES = ("image", "text", "fused")
MONITOR = "val_towers_accuracy"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
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

    @property
    def augmentation(self) -> "Augmentation":
        return Augmentation(self.flip, self.token_dropout)


@dataclass(frozen=True)
class Augmentation:
    """What training batches randomise (see `_batched`); the default randomises nothing."""

    flip: bool = False
    token_dropout: float = 0.0


class HuseTrainer(keras.Model):
    """Optimises a HUSE network on the sum of the three losses and logs each loss and accuracy per epoch."""

    def __init__(self, network: keras.Model, huse_loss: HuseLoss, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.huse_loss = huse_loss
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ("loss", *COMPONENTS)}
        self.accuracies = {m: keras.metrics.SparseCategoricalAccuracy(name=f"{m}_accuracy") for m in MODALITIES}

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    @property
    def metrics(self):
        return [*self.trackers.values(), *self.accuracies.values()]

    def _record(self, parts, outputs, labels):
        parts = global_values(parts)
        for name, tracker in self.trackers.items():
            tracker.update_state(parts[name])
        keys = {"image": "image_logits", "text": "text_logits", "fused": "fused_probabilities"}
        for modality, metric in self.accuracies.items():
            metric.update_state(labels, outputs[keys[modality]])
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        inputs, labels = data
        with tf.GradientTape() as tape:
            outputs = as_output_dict(self.network(inputs, training=True))
            parts = self.huse_loss(outputs, labels)
        weights = self.network.trainable_weights
        self.optimizer.apply_gradients(zip(tape.gradient(parts["loss"], weights), weights))
        return self._record(parts, outputs, labels)

    def test_step(self, data):
        inputs, labels = data
        outputs = as_output_dict(self.network(inputs, training=False))
        return self._record(self.huse_loss(outputs, labels), outputs, labels)


def training_batches(images: np.ndarray, tokens: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool,
                     seed: int, augmentation: Augmentation = Augmentation()) -> tf.data.Dataset:
    """((float32 images or features, tokens), labels) batches from arrays in memory (see `_batched`)."""
    data = tf.data.Dataset.from_tensor_slices(((images, tokens), labels.astype(np.int32)))
    if shuffle:
        data = data.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return _batched(data, batch_size, seed, augmentation)


def streamed_batches(files: list[str], part: LabelledCatalogue, tokens: np.ndarray, config: HuseConfig,
                     batch_size: int, shuffle: bool, seed: int,
                     augmentation: Augmentation = Augmentation()) -> tf.data.Dataset:
    """The same batches for one split of a sharded catalogue, streamed from its TFRecord files: photos decoded on
    the fly, tokens and labels looked up by product id (products of other splits or dropped classes are skipped).
    Shuffling mixes the file order and a window of products."""
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant([p.id for p in part.products]), tf.range(len(part.products), dtype=tf.int64)), -1)
    all_tokens, all_labels = tf.constant(tokens), tf.constant(np.asarray(part.labels, np.int32))
    data = stream_images(files, config.image_height, config.image_width, shuffle, seed)
    data = data.map(lambda product_id, pixels: (table.lookup(product_id), pixels)).filter(lambda row, _: row >= 0)
    if shuffle:
        data = data.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    data = data.map(lambda row, pixels: ((pixels, tf.gather(all_tokens, row)), tf.gather(all_labels, row)))
    return _batched(data, batch_size, seed, augmentation)


def _batched(data: tf.data.Dataset, batch_size: int, seed: int, augmentation: Augmentation) -> tf.data.Dataset:
    """Batches of ((image, tokens), label) examples with float32 images. `augmentation.flip` mirrors a random half
    of the images; `token_dropout` replaces that share of the real (non-padding) tokens by [UNK], which is what
    an unseen word looks like at inference. The randomness comes from a seeded stream of draws zipped to the
    examples in order (the token mask from a stateless generator keyed by the batch's first draw), not from a
    random op inside the parallel map, whose draws would follow thread scheduling and make seeded runs differ."""
    draws = tf.data.Dataset.random(seed=seed)
    data = tf.data.Dataset.zip((data, draws))

    def to_float(example, draw):
        (image, ids), label = example
        image = tf.cast(image, tf.float32)
        if augmentation.flip and image.shape.rank == 4:
            image = tf.where((draw % 2 == 1)[:, None, None, None], tf.reverse(image, axis=[2]), image)
        if augmentation.token_dropout:
            noise = tf.random.stateless_uniform(tf.shape(ids), tf.stack([draw[0], tf.constant(seed, tf.int64)]))
            ids = tf.where((noise < augmentation.token_dropout) & (ids != PAD_ID), tf.constant(UNK_ID, ids.dtype), ids)
        return (image, ids), label

    return shard_by_data(data.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
                         .prefetch(tf.data.AUTOTUNE))


def _learning_rate(train_config: TrainConfig, train_size: int, global_batch: int):
    if train_config.schedule == "constant":
        return train_config.learning_rate
    if train_config.schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {train_config.schedule!r}; choose cosine or constant")
    steps = train_config.epochs * -(-train_size // global_batch)
    return keras.optimizers.schedules.CosineDecay(train_config.learning_rate, steps)


class EpochLog(keras.callbacks.Callback):
    """Adds to each epoch's logs, before the callbacks that read them: the wall time (time-to-accuracy from
    history.csv) and `val_towers_accuracy`, the mean of the image-only and text-only validation accuracy. That
    mean selects the checkpoint: the fused accuracy at a fixed 0.5 weight is dominated by the stronger text tower
    and peaks epochs before the image tower does, while the fusion weight is tuned afterwards anyway."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start
            if "val_image_accuracy" in logs:
                logs[MONITOR] = (logs["val_image_accuracy"] + logs["val_text_accuracy"]) / 2


class WeightAverage(keras.callbacks.Callback):
    """Polyak averaging: an exponential moving average of the trainable weights, updated after every step, is
    what each validation sees and what the checkpoints keep; training itself goes on from the raw weights. The
    average smooths the last epochs' noise in an over-fitting image tower at no cost in steps. The momentum
    ramps up as min(momentum, (1 + t) / (10 + t)) so early averages do not lean on the random start. The epoch's
    backup also holds the average, so a resumed run goes on from it with a fresh average."""

    def __init__(self, momentum: float):
        super().__init__()
        self.momentum = momentum

    def on_train_begin(self, logs=None):
        weights = self.model.trainable_weights
        self._average = [tf.Variable(w, trainable=False) for w in weights]
        self._raw = [tf.Variable(w, trainable=False) for w in weights]
        self._step = tf.Variable(0.0, trainable=False)
        self._swapped = False

    @tf.function
    def _update(self):
        self._step.assign_add(1.0)
        momentum = tf.minimum(self.momentum, (1.0 + self._step) / (10.0 + self._step))
        for average, weight in zip(self._average, self.model.trainable_weights):
            average.assign(momentum * average + (1.0 - momentum) * weight)

    def on_train_batch_end(self, batch, logs=None):
        self._update()

    def on_test_begin(self, logs=None):
        if not self._swapped:  # validation inside fit: the average goes in, and stays for the checkpoints
            for raw, average, weight in zip(self._raw, self._average, self.model.trainable_weights):
                raw.assign(weight)
                weight.assign(average)
            self._swapped = True

    def on_epoch_begin(self, epoch, logs=None):
        if self._swapped:
            for raw, weight in zip(self._raw, self.model.trainable_weights):
                weight.assign(raw)
            self._swapped = False


def image_inputs(model: HuseModel, products, cache_dir: Path) -> np.ndarray:
    """What the trainable network eats: cached backbone features, or uint8 pixels when nothing is frozen."""
    if model.feature_extractor is not None:
        return cached_features(model, products, cache_dir)
    config = model.config
    return load_pixels([p.image for p in products], config.image_height, config.image_width)


def predict_outputs(network: keras.Model, images: np.ndarray, tokens: np.ndarray,
                    batch_size: int = 512) -> dict[str, np.ndarray]:
    return _collect_outputs(network, ([np.asarray(images[start: start + batch_size], dtype=np.float32),
                                       tokens[start: start + batch_size]]
                                      for start in range(0, len(tokens), batch_size)))


def predict_batches(network: keras.Model, batches: tf.data.Dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Outputs and labels over a dataset of ((images, tokens), labels) batches."""
    labels = []

    def inputs():
        for batch_inputs, batch_labels in batches:
            labels.append(batch_labels.numpy())
            yield batch_inputs

    return _collect_outputs(network, inputs()), np.concatenate(labels)


def _collect_outputs(network: keras.Model, inputs) -> dict[str, np.ndarray]:
    outputs: dict[str, list] = {k: [] for k in OUTPUTS}
    for batch_inputs in inputs:
        batch = as_output_dict(network(batch_inputs, training=False))
        for key in OUTPUTS:
            outputs[key].append(batch[key].numpy())
    return {k: np.concatenate(v) for k, v in outputs.items()}


def load_labelled(catalogue_path, columns: Columns, train_config: TrainConfig, strict: bool,
                  hierarchy=None) -> tuple[Catalogue, LabelledCatalogue]:
    catalogue = read_shard_catalogue(catalogue_path) if is_shard_dir(catalogue_path) else \
        read_catalogue(catalogue_path, columns, strict=strict)
    for line in catalogue.report_lines():
        print(line)
    print(catalogue.summary())
    labelled = label(catalogue, train_config.class_level, train_config.min_class_size, hierarchy)
    if labelled.dropped_classes:
        dropped = sum(labelled.dropped_classes.values())
        reason = "not among the model's classes" if hierarchy is not None else \
            f"fewer than {train_config.min_class_size} products"
        print(f"dropped {len(labelled.dropped_classes)} classes ({dropped} products): {reason}")
    return catalogue, labelled


def train(catalogue_path: str | Path, out_dir: str | Path, model_overrides: dict | None = None,
          train_config: TrainConfig = TrainConfig(), loss_weights: LossWeights = LossWeights(),
          columns: Columns = Columns(), strict: bool = False, class_embeddings: np.ndarray | None = None,
          backbone_weights: str | Path | None = None, cache_dir: str | Path | None = None,
          tokenizer_spec: TokenizerSpec = TokenizerSpec()) -> dict:
    """Trains HUSE on a catalogue and writes the model directory; returns the test-split metrics (nothing on a
    worker that is not the chief)."""
    started = time.perf_counter()
    strategy = make_strategy(train_config.strategy)  # first: multi-worker collectives are set up before any op
    out_dir = Path(out_dir)
    keras.utils.set_random_seed(train_config.seed)
    _, labelled = load_labelled(catalogue_path, columns, train_config, strict)
    hierarchy = labelled.hierarchy
    splits = {name: labelled.split(name) for name in ("train", "val", "test")}
    for name, part in splits.items():
        if not part.products:
            raise ValueError(f"the {name} split is empty: the catalogue is too small to train on")
    print(f"{len(hierarchy)} classes; products train/val/test: "
          + "/".join(str(len(s.products)) for s in splits.values()))

    tokenizer = Tokenizer.build((p.title for p in splits["train"].products), tokenizer_spec)
    config = HuseConfig(num_classes=len(hierarchy), vocab_size=len(tokenizer),
                        max_length=tokenizer.spec.max_length, **(model_overrides or {}))
    model = build_huse(config, backbone_weights)
    print(f"image backbone: {config.backbone} at {config.image_height}x{config.image_width}, "
          f"weights: {model.backbone_source}" + ("" if model.feature_extractor is not None else
                                                  " (no frozen part: training from pixels)"))
    distances = cosine_distances(class_embeddings if class_embeddings is not None else hierarchy.class_embeddings())

    tokens = {name: tokenizer.encode_batch(p.title for p in part.products) for name, part in splits.items()}
    feature_start = time.perf_counter()
    if is_shard_dir(catalogue_path):  # streamed: the frozen backbone runs on every step, inside the network
        files = shard_files(catalogue_path)
        network_of = _pixel_network

        def batches(name: str, size: int, shuffle: bool = False,
                    augmentation: Augmentation = Augmentation()) -> tf.data.Dataset:
            return streamed_batches(files, splits[name], tokens[name], config, size, shuffle, train_config.seed,
                                    augmentation)
        print(f"streaming {len(files)} shard files; the frozen backbone runs on every step")
    else:
        images_all = image_inputs(model, labelled.products, Path(cache_dir) if cache_dir else out_dir / "cache")
        index = {id(p): i for i, p in enumerate(labelled.products)}
        images = {name: np.asarray(images_all[np.array([index[id(p)] for p in part.products])])
                  for name, part in splits.items()}
        network_of = _trainable_network

        def batches(name: str, size: int, shuffle: bool = False,
                    augmentation: Augmentation = Augmentation()) -> tf.data.Dataset:
            return training_batches(images[name], tokens[name], np.asarray(splits[name].labels), size, shuffle,
                                    train_config.seed, augmentation)
    feature_seconds = time.perf_counter() - feature_start
    example = next(iter(batches("val", 1)))[0]

    chief = is_chief(strategy)
    global_batch = train_config.batch_size * strategy.num_replicas_in_sync
    if train_config.strategy != "none":
        print(f"strategy {train_config.strategy}: {strategy.num_replicas_in_sync} replicas in sync, global batch "
              f"{global_batch}" + ("" if chief else "; this worker is not the chief and writes no model"))
    huse_loss = HuseLoss(distances, loss_weights)
    with strategy.scope():  # the cached features above and the evaluation below use the plain `model`
        network = network_of(model)
        if train_config.strategy != "none":  # the same network, its variables created under the strategy
            network = network_of(build_huse(config, backbone_weights))
            network.set_weights(network_of(model).get_weights())
        trainer = HuseTrainer(network, huse_loss)
        trainer.compile(optimizer=keras.optimizers.Adam(
            _learning_rate(train_config, len(splits["train"].products), global_batch)))
        trainer(example)  # built, so a backup can restore
    checkpoints = out_dir / "checkpoints"
    best = checkpoints / "best" / "weights"
    monitor = MONITOR
    callbacks = [
        EpochLog(),
        keras.callbacks.BackupAndRestore(str(checkpoints / "backup")),
        keras.callbacks.ModelCheckpoint(str(best), monitor=monitor, mode="max", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=train_config.patience),
    ]
    if train_config.weight_average:  # first: the callbacks after it log and keep the averaged weights
        callbacks.insert(0, WeightAverage(train_config.weight_average))
    if chief:
        callbacks += [keras.callbacks.TensorBoard(str(out_dir / "logs")),
                      keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True)]
    fit_start = time.perf_counter()
    history = trainer.fit(batches("train", global_batch, True, train_config.augmentation),
                          validation_data=batches("val", 1024), epochs=train_config.epochs, callbacks=callbacks,
                          verbose=2)
    fit_seconds = time.perf_counter() - fit_start
    if not chief:
        print(f"worker done in {fit_seconds:.0f} s; the chief writes the model directory")
        return {}
    HuseTrainer(network_of(model), huse_loss).load_weights(str(best)).expect_partial()
    config = _tune_fusion(model, config, *predict_batches(network_of(model), batches("val", 512)))

    metrics = evaluate_outputs(*predict_batches(network_of(model), batches("test", 512)), hierarchy)
    metrics.update({
        "split": "test", "catalogue": str(catalogue_path),
        "train_products_per_second": len(splits["train"].products) * len(history.history.get("loss", [])) / fit_seconds,
        "feature_seconds": feature_seconds, "fit_seconds": fit_seconds,
        "total_seconds": time.perf_counter() - started,
    })
    full_config = {
        "huse_edge_version": __version__, "model": config.to_dict(), "train": asdict(train_config),
        "loss": loss_weights.to_dict(), "columns": {**asdict(columns), "category": list(columns.category)},
        "tokenizer": asdict(tokenizer.spec), "backbone_source": model.backbone_source,
        "class_embeddings": "user matrix" if class_embeddings is not None else "hierarchy (tree distance)",
    }
    save_model_dir(out_dir, model.inference, full_config, hierarchy, tokenizer, distances, metrics)
    print(format_metrics(metrics))
    print(f"trained in {metrics['total_seconds'] / 60:.1f} min (features {feature_seconds:.0f} s, "
          f"fit {fit_seconds:.0f} s); model directory: {out_dir}")
    return metrics


def _tune_fusion(model: HuseModel, config: HuseConfig, outputs: dict[str, np.ndarray],
                 labels: np.ndarray) -> HuseConfig:
    """Sets the late-fusion image weight chosen on the validation split in both networks and the config."""
    weight = best_fusion_weight(outputs["image_logits"], outputs["text_logits"], labels)
    for network in (model.trainable, model.inference):
        network.get_layer("fused").image_weight = weight
    print(f"late fusion: image weight {weight:.2f} (best fused top-1 on the validation split)")
    return replace(config, fusion_image_weight=weight)


def _trainable_network(model: HuseModel) -> keras.Model:
    return model.trainable


def _pixel_network(model: HuseModel) -> keras.Model:
    """Pixels -> outputs, the frozen backbone part included (its layers are not trainable)."""
    return model.inference


def overrides_for(**kwargs) -> dict:
    """HuseConfig overrides from CLI options, dropping the ones left unset."""
    return {k: v for k, v in kwargs.items() if v is not None}

