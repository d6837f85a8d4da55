"""Training: catalogue -> cached backbone features + tokens -> HUSE towers trained on the three losses, then
(optionally) the backbone fine-tuned from pixels.

Kept apart from the library modules (model, loss, features) as in open_clip: this is the job, they are the parts.
Two phases, each one `fit` with a cosine-decayed learning rate: `cached` trains the towers, the shared layer and
the top backbone blocks on cached backbone features (fast: the frozen bottom runs once per catalogue); `finetune`
then trains the backbone from block `finetune_from_block` up (batch norms excepted) from decoded photos for a few
epochs at a lower rate, which adapts the ImageNet bottom to product photos (what cached training cannot). The
finetune phase's epochs continue the cached phase's numbering in `history.csv`.

An interrupted phase resumes from `OUT/checkpoints/<phase>/backup` (Keras BackupAndRestore: weights, optimizer,
epoch; a finished cached phase is re-run, deterministically, before an interrupted fine-tune resumes). The best
epoch of both phases on the validation split (mean of image-only and text-only top-1, see `EpochLog`) is kept in
`OUT/checkpoints/best` and is what gets saved.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from huse_edge import __version__
from huse_edge._tf import keras, tf
from huse_edge.atomic import write_text
from huse_edge.backbones import early_layer_prefixes
from huse_edge.catalogue import SPLITS, Catalogue, Columns, LabelledCatalogue, Product, label, read_catalogue
from huse_edge.distribute import is_chief, make_strategy, shard_by_data
from huse_edge.errors import BackboneError, InterruptedRunError
from huse_edge.evaluate import best_fusion_weight, evaluate_outputs, format_metrics
from huse_edge.features import cached_features, features_and_early_outputs, frozen_outputs
from huse_edge.hierarchy import LabelHierarchy, cosine_distances, user_class_distances
from huse_edge.loss import COMPONENTS, HuseLoss, global_values
from huse_edge.memory import peak_rss_mb
from huse_edge.model import OUTPUTS, HuseModel, as_output_dict, build_huse
from huse_edge.model_dir import save_model_dir
from huse_edge.pixels import load_pixels
from huse_edge.recipe import Augmentation, HuseConfig, LossWeights, TrainConfig
from huse_edge.shards import is_shard_dir, read_shard_catalogue, shard_files, stream_images
from huse_edge.tokenizer import PAD_ID, UNK_ID, Tokenizer, TokenizerSpec

MODALITIES = ("image", "text", "fused")
MONITOR = "val_towers_accuracy"
RUN_SETTINGS = "run.json"  # in OUT/checkpoints: the settings of the run that its backups belong to


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


def training_batches(images: np.ndarray | tuple[np.ndarray, np.ndarray], tokens: np.ndarray, labels: np.ndarray,
                     batch_size: int, shuffle: bool, seed: int,
                     augmentation: Augmentation = Augmentation()) -> tf.data.Dataset:
    """((float32 images or features, tokens), labels) batches from arrays in memory (see `_batched`). `images`
    may be a pair (features, features of the mirrored photos), from which the flip picks instead of mirroring
    the feature map. The dataset shuffles row numbers and each batch gathers its rows from the arrays, which stay
    where they are: slicing the arrays into the dataset would copy them into a tensor and, shuffled, into a
    buffer of every example again (gigabytes for the fine-tune's inputs)."""
    arrays = ((images, tokens), labels.astype(np.int32))
    flat = tf.nest.flatten(arrays)

    def gather(rows: tf.Tensor):
        values = tf.numpy_function(lambda r: [a[r] for a in flat], [rows], [tf.as_dtype(a.dtype) for a in flat],
                                   stateful=False)
        for value, array in zip(values, flat):
            value.set_shape((None, *array.shape[1:]))
        return tf.nest.pack_sequence_as(arrays, values)

    rows = tf.data.Dataset.range(len(labels))
    if shuffle:
        rows = rows.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return _batched(rows, batch_size, seed, augmentation, gather)


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


# tf.data's autotuning model runs on a thread that sleeps for up to a minute between rounds, and an iterator's
# destructor waits for it: Keras drops each epoch's iterator at the start of the next epoch, so every epoch
# boundary stalled for 0-45 s (2.3 min of the default run's 19.8 on an Intel Xeon without AMX). These pipelines
# gather or decode batches faster than a step consumes them; AUTOTUNE then means one call per core and a
# self-sizing prefetch buffer, the same batches in the same order.
_WITHOUT_AUTOTUNE_MODEL = tf.data.Options()
_WITHOUT_AUTOTUNE_MODEL.autotune.enabled = False


def _batched(data: tf.data.Dataset, batch_size: int, seed: int, augmentation: Augmentation,
             lookup: Callable = lambda batch: batch) -> tf.data.Dataset:
    """Batches of ((image, tokens), label) examples, or of what `lookup` turns a batch of into them, with float32
    images. `augmentation.flip` mirrors a random half of the images (or takes their mirrored view, for an (image,
    mirrored) pair); `token_dropout` replaces that share of the real (non-padding) tokens by [UNK], which is what
    an unseen word looks like at inference. The randomness comes from a seeded stream of draws zipped to the
    examples in order (the token mask from a stateless generator keyed by the batch's first draw), not from a
    random op inside the parallel map, whose draws would follow thread scheduling and make seeded runs differ."""
    draws = tf.data.Dataset.random(seed=seed)
    data = tf.data.Dataset.zip((data, draws))

    def to_float(batch, draw):
        (image, ids), label = lookup(batch)
        flip = draw % 2 == 1
        if isinstance(image, tuple):  # (view, the view of the mirrored photo): the flip picks the mirrored one
            image, mirrored = image
            if augmentation.flip:
                image = tf.where(flip[:, None, None, None], mirrored, image)
        elif augmentation.flip and image.shape.rank == 4:
            image = tf.where(flip[:, None, None, None], tf.reverse(image, axis=[2]), image)
        image = tf.cast(image, tf.float32)
        if augmentation.token_dropout:
            noise = tf.random.stateless_uniform(tf.shape(ids), tf.stack([draw[0], tf.constant(seed, tf.int64)]))
            ids = tf.where((noise < augmentation.token_dropout) & (ids != PAD_ID), tf.constant(UNK_ID, ids.dtype), ids)
        return (image, ids), label

    return shard_by_data(data.batch(batch_size).map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
                         .prefetch(tf.data.AUTOTUNE).with_options(_WITHOUT_AUTOTUNE_MODEL))


def _learning_rate(schedule: str, rate: float, epochs: int, train_size: int, global_batch: int):
    """A constant rate, or a cosine decay from `rate` to 0 over the steps of `epochs` epochs."""
    if schedule == "constant":
        return rate
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose cosine or constant")
    return keras.optimizers.schedules.CosineDecay(rate, epochs * -(-train_size // global_batch))


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


@dataclass(frozen=True)
class Phase:
    """One `fit` of the trainer: the network view it optimises, the batches it reads, its global batch size,
    epochs and learning rate (or schedule)."""

    name: str
    network_of: Callable[[HuseModel], keras.Model]
    batches: Callable[..., tf.data.Dataset]
    batch_size: int
    epochs: int
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule


@dataclass(frozen=True)
class PhaseResult:
    name: str
    epochs_run: int
    seconds: float
    improved: bool  # whether one of its epochs is the best so far on the validation split

    def products_per_second(self, train_size: int) -> float:
        return train_size * self.epochs_run / self.seconds if self.seconds else 0.0

    def metrics(self, train_size: int) -> dict:
        return {f"{self.name}_seconds": self.seconds, f"{self.name}_epochs": self.epochs_run,
                f"{self.name}_products_per_second": self.products_per_second(train_size),
                f"{self.name}_improved": self.improved}


class PhaseRunner:
    """Runs the phases of one training on one set of weights (a copy made under the distribution strategy when
    there is one), with the callbacks they share: one best checkpoint across phases, epochs numbered on."""

    def __init__(self, model: HuseModel, backbone_weights: str | Path | None, strategy: tf.distribute.Strategy,
                 huse_loss: HuseLoss, train_config: TrainConfig, out_dir: Path, chief: bool):
        self.strategy, self.huse_loss, self.train_config, self.out_dir, self.chief = \
            strategy, huse_loss, train_config, out_dir, chief
        self.replica = model
        if train_config.strategy != "none":  # the same network, its variables created under the strategy
            with strategy.scope():
                self.replica = build_huse(model.config, backbone_weights)
            self.replica.inference.set_weights(model.inference.get_weights())
        self.best_weights = str(out_dir / "checkpoints" / "best" / "weights")
        self.best = keras.callbacks.ModelCheckpoint(self.best_weights, monitor=MONITOR, mode="max",
                                                    save_best_only=True, save_weights_only=True)
        self.phases: dict[str, Phase] = {}
        self.best_phase: str | None = None
        self.epochs_done = 0

    def run(self, phase: Phase) -> PhaseResult:
        """Trains from the current weights and leaves the phase's best epoch in them (the next phase starts
        there)."""
        config = self.train_config
        self.phases[phase.name] = phase
        with self.strategy.scope():
            trainer = HuseTrainer(phase.network_of(self.replica), self.huse_loss)
            trainer.compile(optimizer=keras.optimizers.Adam(phase.learning_rate))
            trainer(next(iter(phase.batches("val", 1)))[0])  # built, so a backup can restore
        callbacks = [
            EpochLog(),
            keras.callbacks.BackupAndRestore(str(self.out_dir / "checkpoints" / phase.name / "backup")),
            self.best,
            keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=config.patience,
                                          restore_best_weights=True),
        ]
        if config.weight_average:  # first: the callbacks after it log and keep the averaged weights
            callbacks.insert(0, WeightAverage(config.weight_average))
        if self.chief:
            callbacks += [keras.callbacks.TensorBoard(str(self.out_dir / "logs")),
                          keras.callbacks.CSVLogger(str(self.out_dir / "history.csv"), append=True)]
        before, start = self.best.best, time.perf_counter()
        history = trainer.fit(phase.batches("train", phase.batch_size, True, config.augmentation),
                              validation_data=phase.batches("val", 1024), initial_epoch=self.epochs_done,
                              epochs=self.epochs_done + phase.epochs, callbacks=callbacks, verbose=2)
        seconds = time.perf_counter() - start
        improved = self.best.best != before
        if improved:
            self.best_phase = phase.name
        if history.epoch:  # absolute epoch numbers: a resumed phase starts after its backed-up epoch
            self.epochs_done = history.epoch[-1] + 1
        return PhaseResult(phase.name, len(history.epoch), seconds, improved)

    def load_best(self, model: HuseModel) -> None:
        """The best epoch's weights, from the checkpoint file, into `model` (the chief's plain copy)."""
        network = self.phases[self.best_phase].network_of(model)
        HuseTrainer(network, self.huse_loss).load_weights(self.best_weights).expect_partial()


def image_inputs(model: HuseModel, products: Sequence[Product], cache_dir: Path,
                 pixels: np.ndarray | None = None) -> np.ndarray:
    """What the trainable network eats: cached backbone features, or uint8 pixels when nothing is frozen.
    `pixels`, when the caller has decoded the photos already, are not decoded again."""
    if model.feature_extractor is not None:
        return cached_features(model, products, cache_dir, pixels=pixels)
    if pixels is not None:
        return pixels
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


def load_labelled(catalogue_path: str | Path, columns: Columns, train_config: TrainConfig, strict: bool,
                  hierarchy: LabelHierarchy | None = None) -> tuple[Catalogue, LabelledCatalogue]:
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
    splits = {name: labelled.split(name) for name in SPLITS}
    print(f"{len(hierarchy)} classes; products train/val/test: "
          + "/".join(str(len(s.products)) for s in splits.values()))

    tokenizer = Tokenizer.build((p.title for p in splits["train"].products), tokenizer_spec)
    config = HuseConfig(num_classes=len(hierarchy), vocab_size=len(tokenizer),
                        max_length=tokenizer.spec.max_length, **(model_overrides or {}))
    model = build_huse(config, backbone_weights)
    train_config = train_config.for_backbone(config.backbone)
    print(f"image backbone: {config.backbone} at {config.image_height}x{config.image_width}, "
          f"weights: {model.backbone_source}" + ("" if model.feature_extractor is not None else
                                                  " (no frozen part: training from pixels)"))
    distances = cosine_distances(hierarchy.class_embeddings()) if class_embeddings is None else \
        user_class_distances(class_embeddings, len(hierarchy))

    tokens = {name: tokenizer.encode_batch(p.title for p in part.products) for name, part in splits.items()}
    finetune = train_config.finetune_epochs > 0 and model.feature_extractor is not None
    if train_config.keep_depthwise and model.feature_extractor is None:  # refused before any training
        raise BackboneError(f"--keep-depthwise keeps ImageNet's depthwise kernels, and {config.backbone} has no "
                            "ImageNet weights here (it trains from pixels)")
    split = None
    if finetune:  # a bad --finetune-from-block fails here, not after the cached phase
        early_layer_prefixes(config.backbone, train_config.finetune_from_block)
        if not is_shard_dir(catalogue_path):
            split = model.split_at(train_config.finetune_from_block)
    check_resumable(out_dir, {**_settings(config, train_config, loss_weights, columns, tokenizer, class_embeddings),
                              "catalogue": str(Path(catalogue_path).resolve())}, is_chief(strategy))
    feature_start = time.perf_counter()
    if is_shard_dir(catalogue_path):  # streamed: the frozen backbone runs on every step, inside the network
        files = shard_files(catalogue_path)
        network_of = _pixel_network

        def batches(name: str, size: int, shuffle: bool = False,
                    augmentation: Augmentation = Augmentation()) -> tf.data.Dataset:
            return streamed_batches(files, splits[name], tokens[name], config, size, shuffle, train_config.seed,
                                    augmentation)
        pixel_batches = batches
        print(f"streaming {len(files)} shard files; the frozen backbone runs on every step")
    else:
        index = {id(p): i for i, p in enumerate(labelled.products)}
        rows = {name: np.array([index[id(p)] for p in part.products]) for name, part in splits.items()}
        pixels_all = load_pixels([p.image for p in labelled.products], config.image_height, config.image_width) \
            if finetune or model.feature_extractor is None else None
        cache = Path(cache_dir) if cache_dir else out_dir / "cache"
        if split is not None:  # the fine-tune trains on the frozen blocks' outputs, computed once
            images_all, early = features_and_early_outputs(model, split, labelled.products, cache, pixels_all, rows)
            pixels = early_block_inputs(split.early, pixels_all, rows["train"], early)
        else:
            images_all = image_inputs(model, labelled.products, cache, pixels_all)
        images = {name: np.asarray(images_all[row]) for name, row in rows.items()}
        if split is None:
            pixels = {name: pixels_all[row] for name, row in rows.items()} if finetune else images
        del pixels_all, images_all
        network_of = _trainable_network

        def batches(name: str, size: int, shuffle: bool = False,
                    augmentation: Augmentation = Augmentation(), inputs: dict = images) -> tf.data.Dataset:
            return training_batches(inputs[name], tokens[name], np.asarray(splits[name].labels), size, shuffle,
                                    train_config.seed, augmentation)

        def pixel_batches(name: str, size: int, shuffle: bool = False,
                          augmentation: Augmentation = Augmentation()) -> tf.data.Dataset:
            return batches(name, size, shuffle, augmentation, pixels)
    feature_seconds = time.perf_counter() - feature_start

    chief = is_chief(strategy)
    global_batch = train_config.batch_size * strategy.num_replicas_in_sync
    if train_config.strategy != "none":
        print(f"strategy {train_config.strategy}: {strategy.num_replicas_in_sync} replicas in sync, global batch "
              f"{global_batch}" + ("" if chief else "; this worker is not the chief and writes no model"))
    runner = PhaseRunner(model, backbone_weights, strategy, HuseLoss(distances, loss_weights), train_config,
                         out_dir, chief)
    train_size = len(splits["train"].products)
    phases = [runner.run(Phase("cached", depthwise_kept(network_of, train_config.keep_depthwise), batches,
                               global_batch, train_config.epochs,
                               _learning_rate(train_config.schedule, train_config.learning_rate,
                                              train_config.epochs, train_size, global_batch)))]
    if finetune:
        finetune_batch = train_config.finetune_batch_size * strategy.num_replicas_in_sync
        schedule = _learning_rate("cosine", train_config.finetune_learning_rate, train_config.finetune_epochs,
                                  train_size, finetune_batch)
        network_of_finetune = depthwise_kept(partial(finetune_network, from_block=train_config.finetune_from_block,
                                                     split=split is not None), train_config.keep_depthwise)
        phases.append(runner.run(Phase("finetune", network_of_finetune, pixel_batches, finetune_batch,
                                       train_config.finetune_epochs, schedule)))
    if not chief:
        print(f"worker done in {sum(p.seconds for p in phases):.0f} s; the chief writes the model directory")
        return {}
    runner.load_best(model)
    if not finetune:
        network, eval_batches = network_of(model), batches
    else:  # the split view built above shares `model`'s layers, which now hold the best weights
        network, eval_batches = (split.finetune if split is not None else _pixel_network(model)), pixel_batches
    config = _tune_fusion(model, config, *predict_batches(network, eval_batches("val", 512)))

    metrics = evaluate_outputs(*predict_batches(network, eval_batches("test", 512)), hierarchy)
    metrics.update({"split": "test", "catalogue": str(Path(catalogue_path).resolve()),
                    "feature_seconds": feature_seconds})
    for phase in phases:
        metrics.update(phase.metrics(train_size))
    metrics["total_seconds"] = time.perf_counter() - started
    metrics["peak_rss_mb"] = peak_rss_mb()
    full_config = {"huse_edge_version": __version__,
                   **_settings(config, train_config, loss_weights, columns, tokenizer, class_embeddings),
                   "backbone_source": model.backbone_source}
    save_model_dir(out_dir, model.inference, full_config, hierarchy, tokenizer, distances, metrics)
    print(format_metrics(metrics))
    print(f"trained in {metrics['total_seconds'] / 60:.1f} min (features {feature_seconds:.0f} s, "
          + ", ".join(f"{p.name} {p.seconds:.0f} s at {p.products_per_second(train_size):.0f} products/s"
                      for p in phases)
          + f"; peak memory {metrics['peak_rss_mb'] / 1024:.1f} GiB); model directory: {out_dir}")
    return metrics


def _settings(config: HuseConfig, train_config: TrainConfig, loss_weights: LossWeights, columns: Columns,
              tokenizer: Tokenizer, class_embeddings: np.ndarray | None) -> dict:
    """How a model was trained: what `config.json` records, and what an interrupted run must be resumed with."""
    return {"model": config.to_dict(), "train": asdict(train_config), "loss": loss_weights.to_dict(),
            "columns": columns.to_dict(), "tokenizer": asdict(tokenizer.spec),
            "class_embeddings": "user matrix" if class_embeddings is not None else "hierarchy (tree distance)"}


def _differences(before: dict, now: dict, prefix: str = "") -> list[str]:
    changed = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key} {old!r} -> {new!r}")
    return changed


def check_resumable(out_dir: Path, settings: dict, chief: bool) -> None:
    """Refuses to resume an interrupted run (its phase backups in OUT/checkpoints) with other settings: its weights
    would not fit another network (a TensorFlow error deep in the restore), or would go on under another recipe.
    Then records these settings for the next check."""
    checkpoints = out_dir / "checkpoints"
    recorded = checkpoints / RUN_SETTINGS
    if any(checkpoints.glob("*/backup")) and recorded.is_file():
        changed = _differences(json.loads(recorded.read_text(encoding="utf-8")), json.loads(json.dumps(settings)))
        if changed:
            raise InterruptedRunError(
                f"{out_dir} holds an interrupted run with other settings ({'; '.join(changed[:4])}"
                f"{'; ...' if len(changed) > 4 else ''}): run its command again to resume it, or start anew with "
                f"another --out or after deleting {checkpoints}")
    if chief:
        write_text(recorded, json.dumps(settings, indent=2) + "\n")


def _tune_fusion(model: HuseModel, config: HuseConfig, outputs: dict[str, np.ndarray],
                 labels: np.ndarray) -> HuseConfig:
    """Sets the late-fusion image weight chosen on the validation split in the model (one fusion layer serves all
    its views) and the config."""
    weight = best_fusion_weight(outputs["image_logits"], outputs["text_logits"], labels)
    model.inference.get_layer("fused").image_weight = weight  # the layer every view of the model shares
    print(f"late fusion: image weight {weight:.2f} (best fused top-1 on the validation split)")
    return replace(config, fusion_image_weight=weight)


def _trainable_network(model: HuseModel) -> keras.Model:
    return model.trainable


def _pixel_network(model: HuseModel) -> keras.Model:
    """Pixels -> outputs, the frozen backbone part included (its layers are not trainable)."""
    return model.inference


def finetune_network(model: HuseModel, from_block: int = 0, split: bool = False) -> keras.Model:
    """Pixels -> outputs with every layer trainable but the backbone's stem and blocks before `from_block` (see
    `early_layer_prefixes`) and the batch norms, whose statistics stay ImageNet's: batches of 64 small photos
    would estimate them worse. With `split`, the network starts from the output of those frozen blocks
    (`HuseModel.split_at`), so that it trains on their outputs computed once (`early_block_inputs`)."""
    early = early_layer_prefixes(model.config.backbone, from_block)
    for layer in model.inference.layers:
        layer.trainable = not (isinstance(layer, keras.layers.BatchNormalization) or layer.name.startswith(early))
    return model.split_at(from_block).finetune if split else model.inference


def depthwise_kept(network_of: Callable[[HuseModel], keras.Model], keep: bool) -> Callable[[HuseModel], keras.Model]:
    """`network_of`, with the backbone's depthwise kernels kept at their ImageNet values when `keep`
    (`TrainConfig.keep_depthwise`): oneDNN computes their gradient slowly at these small maps (a third of a fine-tune
    step's time), and they are not where the fine-tune adapts (benchmarks/EXPERIMENTS.md)."""
    if not keep:
        return network_of

    def network(model: HuseModel) -> keras.Model:
        built = network_of(model)
        for layer in built.layers:
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                layer.trainable = False
        return built
    return network


def early_block_inputs(early: keras.Model, pixels: np.ndarray, train_rows: np.ndarray,
                       outputs: dict[str, np.ndarray]) -> dict:
    """The fine-tune's inputs: `outputs`, the frozen early blocks' outputs (float16, as the feature cache) of
    each split's photos (`features_and_early_outputs`), and for the training split also those of the mirrored
    photos (its `train_rows` of `pixels`): the fine-tune's random flip then picks the exact features of the
    mirrored photo. The frozen layers' forward pass would otherwise run in every fine-tune step; this runs it
    once per photo and view instead of once per epoch."""
    start = time.perf_counter()
    mirrored = frozen_outputs(early, pixels, mirror=True, rows=train_rows)
    print(f"fine-tune inputs: outputs of the frozen blocks {mirrored.shape[1:]} of every photo, and of the "
          f"{len(mirrored)} mirrored training photos in {time.perf_counter() - start:.0f} s")
    return {**outputs, "train": (outputs["train"], mirrored)}
