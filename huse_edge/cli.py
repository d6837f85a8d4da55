"""`huse-edge` command line: train, evaluate, export, verify, classify, index, search, benchmark.

Errors a user can fix (bad catalogue, bad bundle, missing file) end with a one-line message and exit code 2,
never a traceback. A command that prints a JSON document prints nothing else on stdout.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import multiprocessing
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from huse_edge.recipe import (  # the options' defaults
    BACKBONES, FINETUNE_FROM_BLOCK, KEEPS_DEPTHWISE, HuseConfig, LossWeights, QatConfig, TrainConfig)

if TYPE_CHECKING:  # each command imports what it runs, so that `--help` and the edge commands stay light
    from huse_edge.bundle import Bundle
    from huse_edge.reference import ReferenceRun
    from huse_edge.runtime import HuseRuntime

MIN_IMAGE_SIDE = 32
SPLIT_CHOICE = click.Choice(["train", "val", "test", "all"])  # `catalogue.SPLITS`, or every product
DEFAULT_CATALOGUE = Path("../shared/data/fashion-products/products.csv")
GET_DATA_HINT = ("no catalogue at {path}. Get the public Fashion Product Images (small) catalogue with:\n"
                 "  pip install kaggle==2.2.5 six && kaggle datasets download -d "
                 "paramaggarwal/fashion-product-images-small --unzip -p data/raw && "
                 "huse-edge data import-fashion data/raw --out data/fashion-products\n"
                 "then run: huse-edge train data/fashion-products/products.csv\n"
                 "(kaggle 2 downloads public datasets without an account, and imports six without declaring it; "
                 "kaggle 1.x needs an API token in ~/.kaggle/kaggle.json)")


# What `pip install 'huse-edge[train]'` adds to the edge install (numpy, Pillow, LiteRT): train, evaluate, export,
# verify against the Keras model and data shard need it.
TRAINING_STACK = ("tensorflow", "tf_keras", "tensorflow_model_optimization")


def _lacks_training_stack(error: ModuleNotFoundError) -> bool:
    return (error.name or "").split(".")[0] in TRAINING_STACK


def _user_errors(function):
    """Turns the toolkit's own error types, and a training command run on an edge install, into a clear message
    and exit code 2."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from huse_edge.errors import USER_ERRORS

        try:
            return function(*args, **kwargs)
        except USER_ERRORS as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
        except ModuleNotFoundError as error:
            if not _lacks_training_stack(error):
                raise
            command = click.get_current_context().command_path
            click.echo(f"error: {command} needs TensorFlow, which this install lacks (the edge install runs "
                       "bundles only): pip install 'huse-edge[train]'", err=True)
            sys.exit(2)

    return wrapper


def _on_command_line(*names: str) -> bool:
    """Whether any of these parameters was given on the command line rather than left at its default."""
    context = click.get_current_context()
    return any(context.get_parameter_source(name) == ParameterSource.COMMANDLINE for name in names)


def _progress_on_stderr(active: bool = True) -> contextlib.AbstractContextManager:
    """What a command prints on its way to a JSON result (catalogue reports, export progress) goes to stderr, so
    that stdout holds the JSON document alone: `huse-edge verify BUNDLE --json | jq` parses."""
    return contextlib.redirect_stdout(sys.stderr) if active else contextlib.nullcontext()


@click.group()
@click.version_option(package_name="huse-edge")
def main() -> None:
    """Train HUSE product embeddings, export them to TFLite and verify them on edge runtimes."""


def _columns(category_columns: str | None):
    from huse_edge.catalogue import Columns

    if not category_columns:
        return Columns()
    return Columns(category=tuple(c.strip() for c in category_columns.split(",")))


@main.command()
@click.argument("catalogue", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("runs/huse"), show_default=True)
@click.option("--backbone", type=click.Choice(BACKBONES), default=HuseConfig.backbone, show_default=True)
@click.option("--backbone-weights", type=click.Path(exists=True, path_type=Path),
              help="Pretrained weights file (EfficientNet-Lite0: a PyTorch state dict; Keras apps: .h5).")
@click.option("--image-size", default=f"{HuseConfig.image_height}x{HuseConfig.image_width}", show_default=True,
              help="Model input HEIGHTxWIDTH.")
@click.option("--trainable-blocks", type=click.IntRange(0), default=HuseConfig.trainable_blocks, show_default=True,
              help="Top EfficientNet-Lite0 blocks trained in the cached phase (the other backbones have no such "
                   "blocks: frozen whole with ImageNet weights, trained whole without).")
@click.option("--embedding-dim", type=click.IntRange(1), default=HuseConfig.embedding_dim, show_default=True)
@click.option("--logit-scale", type=click.FloatRange(0.0, min_open=True), default=HuseConfig.logit_scale,
              show_default=True, help="Constant that multiplies each unit-norm embedding before the shared layer.")
@click.option("--epochs", type=click.IntRange(1),
              default=TrainConfig.epochs, show_default=True, help="Epochs on cached features.")
@click.option("--batch-size", type=click.IntRange(1),
              default=TrainConfig.batch_size, show_default=True, help="Per replica.")
@click.option("--learning-rate", type=click.FloatRange(0.0, min_open=True),
              default=TrainConfig.learning_rate, show_default=True)
@click.option("--patience", type=click.IntRange(0), default=TrainConfig.patience, show_default=True,
              help="Early-stopping patience (epochs).")
@click.option("--class-level", type=int, default=TrainConfig.class_level, show_default=True,
              help="Hierarchy level of the class (-1 = leaf).")
@click.option("--min-class-size", type=click.IntRange(1), default=TrainConfig.min_class_size, show_default=True)
@click.option("--category-columns", help="Comma-separated category columns, top level first.")
@click.option("--class-embeddings", type=click.Path(exists=True, path_type=Path),
              help=".npy matrix (classes x dims, rows in labels.txt order) replacing the hierarchy distance.")
@click.option("--class-weight", type=click.FloatRange(0.0), default=LossWeights.class_level, show_default=True)
@click.option("--graph-weight", type=click.FloatRange(0.0), default=LossWeights.semantic, show_default=True)
@click.option("--gap-weight", type=click.FloatRange(0.0), default=LossWeights.gap, show_default=True)
@click.option("--graph-threshold", type=float, default=LossWeights.threshold, show_default=True)
@click.option("--fused-weight", type=click.FloatRange(0.0), default=LossWeights.fused, show_default=True,
              help="Weight of the cross-entropy of the fused logits (the towers' mean), beside the three losses.")
@click.option("--label-smoothing", type=click.FloatRange(0.0, 1.0, max_open=True), default=LossWeights.label_smoothing,
              show_default=True, help="Label smoothing of the class-level loss.")
@click.option("--token-dropout", type=click.FloatRange(0.0, 1.0, max_open=True), default=TrainConfig.token_dropout,
              show_default=True, help="Share of title tokens replaced by [UNK] in training batches.")
@click.option("--weight-average", type=click.FloatRange(0.0, 1.0, max_open=True), default=TrainConfig.weight_average,
              show_default=True,
              help="Momentum of the moving average of the weights that is validated and kept (0: off).")
@click.option("--finetune-epochs", type=click.IntRange(0), default=TrainConfig.finetune_epochs, show_default=True,
              help="Epochs of backbone fine-tuning from the photos after the cached phase (0: off).")
@click.option("--finetune-learning-rate", type=click.FloatRange(0.0, min_open=True),
              default=TrainConfig.finetune_learning_rate, show_default=True)
@click.option("--finetune-batch-size", type=click.IntRange(1),
              default=TrainConfig.finetune_batch_size, show_default=True, help="Per replica.")
@click.option("--finetune-from-block", type=click.IntRange(0),
              help="The fine-tune keeps the backbone's stem and its blocks before this one as ImageNet trained them "
                   "(0: trains them all).  [default: "
                   + ", ".join(f"{block} for {name}" for name, block in FINETUNE_FROM_BLOCK.items()) + "]")
@click.option("--keep-depthwise/--train-depthwise", default=None,
              help="Keep the backbone's depthwise kernels as ImageNet trained them, in both phases: their gradient is "
                   "about a third of a fine-tune step on a CPU, and the time saved pays for the fine-tune's epochs "
                   "(benchmarks/EXPERIMENTS.md).  [default: "
                   + ", ".join(f"{'kept' if name in KEEPS_DEPTHWISE else 'trained'} for {name}"
                               for name in FINETUNE_FROM_BLOCK) + "]")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Feature cache (default: OUT/cache).")
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True)
@click.option("--strategy", type=click.Choice(["none", "mirrored", "multi-worker"]), default=TrainConfig.strategy,
              show_default=True, help="tf.distribute strategy; multi-worker reads the cluster from TF_CONFIG.")
@click.option("--strict", is_flag=True, help="Stop at the first bad catalogue row instead of skipping it.")
@_user_errors
def train(catalogue, out_dir, backbone, backbone_weights, image_size, trainable_blocks, embedding_dim, logit_scale,
          epochs, batch_size, learning_rate, patience, class_level, min_class_size, category_columns,
          class_embeddings, class_weight, graph_weight, gap_weight, graph_threshold, fused_weight, label_smoothing,
          token_dropout, weight_average, finetune_epochs, finetune_learning_rate, finetune_batch_size,
          finetune_from_block, keep_depthwise, cache_dir, seed, strategy, strict):
    """Train HUSE on CATALOGUE (default: the shared Fashion Product Images catalogue), a CSV/JSONL file or a
    directory of TFRecord shards from `huse-edge data shard`."""
    from huse_edge.shards import MANIFEST, is_shard_dir

    catalogue = catalogue or DEFAULT_CATALOGUE
    if catalogue.is_dir() and not is_shard_dir(catalogue):
        raise click.UsageError(f"{catalogue} is a folder without the {MANIFEST} of `huse-edge data shard`: give "
                               "the catalogue's CSV/JSONL file, or a folder of shards")
    if not (catalogue.is_file() or is_shard_dir(catalogue)):
        raise click.UsageError(GET_DATA_HINT.format(path=catalogue))
    if backbone != "efficientnet_lite0" and _on_command_line("trainable_blocks"):
        raise click.BadParameter(f"applies to efficientnet_lite0 only: {backbone} has no top blocks trained on cached "
                                 "features", param_hint="--trainable-blocks")
    height, width = _size(image_size)
    matrix = _matrix(class_embeddings) if class_embeddings else None
    from huse_edge.train import train as run_training

    model_options = {"backbone": backbone, "image_height": height, "image_width": width,
                     "trainable_blocks": trainable_blocks, "embedding_dim": embedding_dim, "logit_scale": logit_scale}
    run_training(catalogue, out_dir, model_options,
                 TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience,
                             seed=seed, class_level=class_level, min_class_size=min_class_size,
                             token_dropout=token_dropout, weight_average=weight_average, strategy=strategy,
                             finetune_epochs=finetune_epochs, finetune_learning_rate=finetune_learning_rate,
                             finetune_batch_size=finetune_batch_size, finetune_from_block=finetune_from_block,
                             keep_depthwise=keep_depthwise),
                 LossWeights(class_weight, graph_weight, gap_weight, graph_threshold, label_smoothing, fused_weight),
                 _columns(category_columns), strict,
                 matrix,
                 backbone_weights, cache_dir)


def _matrix(path: Path):
    """A `.npy` array, without unpickling anything."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise click.BadParameter(f"{path}: not a .npy number array ({error})", param_hint="--class-embeddings") \
            from None


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected HEIGHTxWIDTH, got {text!r}") from None
    if min(height, width) < MIN_IMAGE_SIDE:
        raise click.BadParameter(f"{text}: each side must be at least {MIN_IMAGE_SIDE} pixels (VGG16 halves the "
                                 "photo five times)", param_hint="--image-size")
    return height, width


@main.command()
@click.argument("model_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("catalogue", type=click.Path(exists=True, path_type=Path))
@click.option("--split", type=SPLIT_CHOICE, default="test", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_user_errors
def evaluate(model_dir, catalogue, split, as_json):
    """Evaluate a trained MODEL_DIR on CATALOGUE (same format as for training)."""
    from huse_edge.evaluate import format_metrics
    from huse_edge.evaluation_job import evaluate_model_dir

    with _progress_on_stderr(as_json):
        metrics = evaluate_model_dir(model_dir, catalogue, split)
    click.echo(json.dumps(metrics, indent=2) if as_json else format_metrics(metrics))


@main.command()
@click.argument("model_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Bundle directory (default: MODEL_DIR/bundle).")
@click.option("--catalogue", type=click.Path(path_type=Path), default=None,
              help="Catalogue for QAT, calibration and parity (default: the one the model was trained on).")
@click.option("--int8", "int8", is_flag=True, help="Quantization-aware fine-tune, then full-int8 TFLite.")
@click.option("--ptq", is_flag=True, help="Post-training full-int8 (no QAT), for comparison.")
@click.option("--fp16", is_flag=True)
@click.option("--dynamic", is_flag=True, help="Dynamic-range quantisation (int8 weights, float activations).")
@click.option("--float", "float32", is_flag=True)
@click.option("--margin", type=float, default=1.0, show_default=True,
              help="Refuse when int8 fused top-1 is more than this many points below the float model.")
@click.option("--force", is_flag=True, help="Write the bundle even when the parity margin is exceeded.")
@click.option("--qat-products", type=click.IntRange(1), default=QatConfig.products, show_default=True,
              help="Training products the quantization-aware fine-tune sees.")
@click.option("--qat-epochs", type=click.IntRange(1), default=QatConfig.epochs, show_default=True)
@click.option("--qat-learning-rate", type=click.FloatRange(0.0, min_open=True), default=QatConfig.learning_rate,
              show_default=True)
@click.option("--parity-products", type=click.IntRange(1), default=None,
              help="Limit the validation products used for parity.")
@_user_errors
def export(model_dir, out, catalogue, int8, ptq, fp16, dynamic, float32, margin, force, qat_products, qat_epochs,
           qat_learning_rate, parity_products):
    """Export MODEL_DIR to an edge bundle (default: --int8 and --float)."""
    from converters.export import ExportRefused, export_bundle
    from huse_edge.model_dir import ModelDir

    variants = [v for v, on in (("float", float32), ("fp16", fp16), ("dynamic", dynamic), ("ptq_int8", ptq),
                                ("int8", int8)) if on] or ["float", "int8"]
    if "int8" in variants and "float" not in variants:
        variants.insert(0, "float")  # the reference every quantised variant is compared with on device
    catalogue = catalogue or ModelDir.load(model_dir).training_catalogue()
    try:
        qat = QatConfig(products=qat_products, epochs=qat_epochs, learning_rate=qat_learning_rate)
        with _progress_on_stderr():
            parity = export_bundle(model_dir, out or model_dir / "bundle", variants, catalogue, margin, force, qat,
                                   parity_products=parity_products)
    except ExportRefused as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(3)
    click.echo(json.dumps(parity, indent=2))


@main.command()
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.argument("catalogue", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--model-dir", type=click.Path(exists=True, path_type=Path),
              help="The trained model the bundle came from (default: recorded in the bundle at export).")
@click.option("--variant", default="int8", show_default=True)
@click.option("--split", type=SPLIT_CHOICE,
              help="The products to check (default: test; with --reference, the recorded ones).")
@click.option("--save-reference", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the float Keras model's outputs on these products here, for --reference on a "
                   "machine without TensorFlow.")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Hold the backends to float outputs written by --save-reference instead of running the Keras "
                   "model: no TensorFlow needed (an edge board).")
@click.option("--backend", "backends", multiple=True,
              help="litert, litert:no-xnnpack, litert-reference, litert-compiled[:gpu|npu], tflite-runtime, tf-lite "
                   "(repeatable; default: all of them).")
@click.option("--delegate", "delegates", multiple=True, type=click.Path(path_type=Path),
              help="External delegate library (GPU, libedgetpu.so.1, vendor NPU), run on LiteRT; repeatable.")
@click.option("--delegate-option", "delegate_options", multiple=True, help="KEY=VALUE passed to every delegate.")
@click.option("--threads", type=click.IntRange(1), help="Interpreter threads (default: the runtime's choice).")
@click.option("--max-products", type=click.IntRange(0), help="Check only the first N products of the split (0: all).")
@click.option("--min-agreement", type=float, default=0.99, show_default=True,
              help="Least share of products on which a backend must make the float model's fused decision.")
@click.option("--max-drop", type=float, default=0.5, show_default=True,
              help="Most points of fused top-1 a backend may lose against the float model.")
@click.option("--max-modality-drop", type=float, default=2.0, show_default=True,
              help="Most points of image-only or text-only top-1 a backend may lose against the float model.")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a self-contained HTML report here.")
@click.option("--json", "as_json", is_flag=True)
@_user_errors
def verify(bundle, catalogue, model_dir, variant, split, save_reference, reference, backends, delegates,
           delegate_options, threads, max_products, min_agreement, max_drop, max_modality_drop, report, as_json):
    """Check that BUNDLE behaves like the float Keras model on every backend; exit 1 when parity fails."""
    from huse_edge.bundle import Bundle
    from huse_edge.reference import load_reference
    from huse_edge.runtime import RuntimeOptions
    from huse_edge.verify import DEFAULT_BACKENDS, ParityLimits, format_result, summary
    from huse_edge.verify import verify as run_verify

    if reference and (model_dir or save_reference):
        raise click.UsageError("--reference stands in for the Keras model: give it without --model-dir and "
                               "--save-reference")
    loaded = Bundle.load(bundle)
    options = [RuntimeOptions.from_label(b, threads) for b in backends] or \
        [RuntimeOptions(o.backend, threads, o.xnnpack, accelerator=o.accelerator) for o in DEFAULT_BACKENDS]
    if any("=" not in o for o in delegate_options):
        raise click.BadParameter("expected KEY=VALUE", param_hint="--delegate-option")
    settings = dict(o.split("=", 1) for o in delegate_options)
    options += [RuntimeOptions("litert", threads, delegate=str(d), delegate_options=settings) for d in delegates]
    with _progress_on_stderr(as_json):
        if reference:
            run = load_reference(reference, loaded, variant, catalogue, max_products)
            if split not in (None, run.split):
                raise click.UsageError(f"{reference} holds the {run.split} split, not {split}")
        else:
            run = _keras_reference(loaded, model_dir, catalogue, split or "test", max_products)
            if save_reference:
                from huse_edge.reference import save_reference as write_reference

                write_reference(run, save_reference, loaded)
                click.echo(f"wrote the float outputs of {len(run.products)} products to {save_reference}")
        result = run_verify(loaded, variant, run.images, run.tokens, run.labels, run.outputs, options,
                            ParityLimits(min_agreement, max_drop, max_modality_drop), run.products, run.split)
    if report:
        from huse_edge.report import write_report

        write_report(result, report)
    click.echo(json.dumps(summary(result), indent=2) if as_json else format_result(result))
    sys.exit(0 if result.passed else 1)


def _keras_reference(bundle: Bundle, model_dir: Path | None, catalogue: Path | None, split: str,
                     max_products: int | None) -> ReferenceRun:
    """The float Keras model's outputs on the split: what `verify` holds the bundle to, where TensorFlow is."""
    from huse_edge.bundle import sha256_of
    from huse_edge.model_dir import MODEL_FILE
    from huse_edge.verify import default_model_dir

    model_dir = model_dir or default_model_dir(bundle)
    if model_dir is None:
        raise click.UsageError(f"{bundle.path}: the model it was exported from is not where the bundle says; "
                               "give --model-dir")
    source = bundle.manifest.get("source_model_sha256")  # absent from bundles exported before it was recorded
    if source and sha256_of(Path(model_dir) / MODEL_FILE) != source:
        raise click.UsageError(f"{model_dir} holds another model than the one {bundle.path} was exported from "
                               "(trained again since?): export it again, or give --model-dir that model")
    try:
        from huse_edge.evaluation_job import keras_reference
    except ModuleNotFoundError as error:
        if not _lacks_training_stack(error):
            raise
        raise click.UsageError("verify runs the float Keras model, which needs TensorFlow (pip install "
                               "'huse-edge[train]'); where it is not installed, hold the bundle to outputs recorded "
                               "where it is: --save-reference FILE there, --reference FILE here") from None
    return keras_reference(model_dir, catalogue, split, max_products)


def _text_with_tokens(context: click.Context, parameter: click.Parameter, text: str | None) -> str | None:
    """Refuses a title or text query of which the tokenizer reads nothing: its token ids would be all padding, and
    the text tower would embed nothing the user wrote."""
    from huse_edge.tokenizer import tokens

    if text is not None and not tokens(text):
        raise click.BadParameter(f"{text!r} has no ASCII letters or digits, the only characters the tokenizer reads")
    return text


@main.command()
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--image", type=click.Path(exists=True, path_type=Path))
@click.option("--title", callback=_text_with_tokens)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True,
              help="At most this many classes; those of probability 0 (below an int8 output's 1/256) are not listed.")
@click.option("--catalogue", type=click.Path(exists=True, path_type=Path),
              help="Classify every product of this catalogue (its category columns may be absent or empty) into "
                   "--out, and list the categories the model disputes.")
@click.option("--out", type=click.Path(path_type=Path), help="With --catalogue: the predictions' CSV file.")
@click.option("--split", type=SPLIT_CHOICE, default="all", show_default=True,
              help="With --catalogue: its products of this split only.")
@click.option("--category-columns", help="With --catalogue: comma-separated category columns, top level first.")
@click.option("--strict", is_flag=True, help="With --catalogue: stop at the first bad row instead of skipping it.")
@click.option("--variant", default="int8", show_default=True)
@click.option("--backend", default="litert", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_user_errors
def classify(bundle, image, title, top_k, catalogue, out, split, category_columns, strict, variant, backend,
             as_json):
    """Top-k classes of a product from its photo and/or title, or of every product of a catalogue, on the edge
    bundle."""
    from huse_edge.bundle import Bundle
    from huse_edge.runtime import HuseRuntime, RuntimeOptions

    if catalogue is not None:
        if image is not None or title is not None:
            raise click.UsageError("give --catalogue, or --image and/or --title, not both")
        if out is None:
            raise click.UsageError("--catalogue needs --out, the predictions' CSV file")
    elif image is None and title is None:
        raise click.UsageError("give --image, --title or both, or --catalogue")
    elif _on_command_line("out", "split", "category_columns", "strict"):
        raise click.UsageError("--out, --split, --category-columns and --strict go with --catalogue")
    runtime = HuseRuntime(Bundle.load(bundle), variant, RuntimeOptions(backend))
    if catalogue is not None:
        _classify_catalogue(runtime, catalogue, out, split, _columns(category_columns), strict, top_k, as_json)
        return
    if image is not None and title is not None:
        probabilities = runtime.classify_product([image], [title])
    elif image is not None:
        probabilities = runtime.classify(runtime.embed_image([image]))
    else:
        probabilities = runtime.classify(runtime.embed_text([title]))
    (top,) = runtime.top_k(probabilities, top_k)
    if as_json:
        click.echo(json.dumps(top, indent=2))
        return
    for rank, entry in enumerate(top, start=1):
        click.echo(f"{rank}. {' > '.join(entry['path'])}  {entry['score']:.4f}")


def _classify_catalogue(runtime: HuseRuntime, catalogue: Path, out: Path, split: str, columns, strict: bool,
                        top_k: int, as_json: bool) -> None:
    from huse_edge.atomic import check_destination
    from huse_edge.catalogue import read_catalogue
    from huse_edge.predictions import classify_catalogue, summary, summary_lines, write_predictions

    check_destination(out)  # before the catalogue's photos are read and checked
    with _progress_on_stderr(as_json):
        read = read_catalogue(catalogue, columns, strict=strict, labels_required=False)
        click.echo("\n".join([read.summary(), *read.report_lines()]))
        products = read.split(split)
        with click.progressbar(length=len(products), label="classifying", file=sys.stderr) as bar:
            predictions = classify_catalogue(runtime, products, top_k, progress=bar.update)
        write_predictions(predictions, out, top_k)
    report = summary(predictions)
    if as_json:
        click.echo(json.dumps({**report, "out": str(out)}, indent=2))
        return
    click.echo("\n".join([*summary_lines(report, len(runtime.bundle.hierarchy)), f"wrote {out}"]))


@main.command()
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.argument("catalogue", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Index file (.hidx), or the directory of index parts with --shard/--workers.")
@click.option("--variant", default="int8", show_default=True)
@click.option("--backend", default="litert", show_default=True)
@click.option("--rebuild", is_flag=True, help="Re-embed every product instead of updating an existing index.")
@click.option("--ann", is_flag=True, help="Also store HNSW graphs (FAISS) for approximate search.")
@click.option("--shard", help="I/N: index only part I of N (0-based) into OUT/part-I-of-N.hidx (one machine's share).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Index in N local processes, into OUT/ as N parts.")
@click.option("--category-columns", help="Comma-separated category columns, top level first.")
@click.option("--strict", is_flag=True, help="Stop at the first bad catalogue row instead of skipping it.")
@_user_errors
def index(bundle, catalogue, out, variant, backend, rebuild, ann, shard, workers, category_columns, strict):
    """Embed every product of a catalogue with the edge bundle; an existing index is updated in place (only new
    and changed products are embedded). `search` reads a directory of parts as one index."""
    from huse_edge.ann import require_ann
    from huse_edge.atomic import check_destination
    from huse_edge.catalogue import read_catalogue
    from huse_edge.index import MODALITIES, check_part_count
    from huse_edge.indexer import write_index, write_index_part

    columns = _columns(category_columns)
    if ann:
        require_ann()  # before the embedding, which the graphs come after
    if shard or workers:
        if shard and workers:
            raise click.UsageError("use --shard I/N (one part here) or --workers N (every part, locally), not both")
        part = _shard(shard) if shard else None
        out.mkdir(parents=True, exist_ok=True)
        check_part_count(out, part[1] if part else workers)
        options = (columns, variant, backend, rebuild, ann, strict)
        if part:  # this machine's part, in this process
            click.echo(write_index_part(bundle, catalogue, out, *part, *options))
            return
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [pool.submit(write_index_part, bundle, catalogue, out, i, workers, *options)
                    for i in range(workers)]
            for job in jobs:
                click.echo(job.result())
        return
    check_destination(out)  # before the catalogue's photos are read and checked (10-13 s for the default one)
    products = read_catalogue(catalogue, columns, strict=strict, labels_required=False)
    click.echo(products.summary())
    with click.progressbar(length=len(products.products), label="embedding", file=sys.stderr) as bar:
        built, report = write_index(bundle, products.products, out, variant, backend, rebuild, ann, bar.update)
    click.echo(f"{report}\nwrote {out}: {len(built)} products, {built.dim}-d, modalities {', '.join(MODALITIES)}"
               + (", with HNSW graphs" if ann else ""))


def _shard(text: str) -> tuple[int, int]:
    try:
        shard, shards = (int(v) for v in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected I/N, got {text!r}") from None
    if not 0 <= shard < shards:
        raise click.BadParameter(f"expected 0 <= I < N, got {text!r}")
    return shard, shards


@main.command()
@click.argument("index_path", metavar="INDEX", type=click.Path(exists=True, path_type=Path))
@click.option("--text", callback=_text_with_tokens, help="Query by title/description.")
@click.option("--image", type=click.Path(exists=True, path_type=Path), help="Query by photo.")
@click.option("--modality", type=click.Choice(["image", "text", "fused"]), default="fused", show_default=True,
              help="Which embedding of the indexed products to search.")
@click.option("--top-k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--method", type=click.Choice(["auto", "brute", "ann"]), default="auto", show_default=True,
              help="auto: brute force up to 100k products, HNSW above.")
@click.option("--precision", type=click.Choice(["int8", "float"]), default="int8", show_default=True)
@click.option("--bundle", type=click.Path(exists=True, path_type=Path),
              help="Bundle that embeds the query (default: the one that built the index).")
@click.option("--backend", default="litert", show_default=True)
@click.option("--eval", "evaluate_split", type=SPLIT_CHOICE,
              help="Instead of a query: retrieval recall of the index on this split.")
@click.option("--json", "as_json", is_flag=True)
@_user_errors
def search(index_path, text, image, modality, top_k, method, precision, bundle, backend, evaluate_split, as_json):
    """Nearest catalogue products to a text or image query (both: a fused query), by cosine."""
    from huse_edge.bundle import Bundle
    from huse_edge.index import ProductIndex
    from huse_edge.runtime import HuseRuntime, RuntimeOptions
    from huse_edge.search import check_model, embed_query, evaluate_index, format_evaluation, hits

    loaded = ProductIndex.load(index_path)
    if evaluate_split:
        metrics = evaluate_index(loaded, evaluate_split)
        click.echo(json.dumps(metrics, indent=2) if as_json else format_evaluation(metrics))
        return
    if text is None and image is None:
        raise click.UsageError("give --text, --image, both, or --eval SPLIT")
    runtime = HuseRuntime(Bundle.load(bundle or loaded.bundle["path"]), loaded.bundle["variant"],
                          RuntimeOptions.from_label(backend))
    check_model(loaded, runtime.bundle, runtime.variant)
    scores, rows = loaded.nearest(embed_query(runtime, text, image), modality, top_k, precision, method)
    found = hits(loaded, scores[0], rows[0])
    if as_json:
        click.echo(json.dumps(found, indent=2, ensure_ascii=False))
        return
    for hit in found:
        click.echo(f"{hit['rank']:>3}. {hit['score']:.4f}  {hit['id']}  {hit['title']}  "
                   f"[{' > '.join(hit['category'])}]")


@main.command()
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--variant", "variants", multiple=True, help="Repeatable (default: every variant in the bundle).")
@click.option("--backend", "backends", multiple=True, help="Repeatable (default: litert and tflite-runtime).")
@click.option("--threads", "threads", multiple=True, type=click.IntRange(1), help="Repeatable (default: 1 and 2).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True)
@click.option("--runs", type=click.IntRange(1), default=50, show_default=True, help="Timed calls per signature.")
@click.option("--image", type=click.Path(exists=True, path_type=Path),
              help="Photo for the end-to-end path (default: a generated 60x80 JPEG).")
@click.option("--json", "as_json", is_flag=True)
@_user_errors
def benchmark(bundle, variants, backends, threads, batch, runs, image, as_json):
    """Latency p50/p90/p99, throughput, peak RSS, size, MACs and fraction of CPU peak per signature and backend."""
    from huse_edge.benchmark import benchmark as run_benchmark
    from huse_edge.benchmark import format_results
    from huse_edge.bundle import Bundle
    from huse_edge.runtime import BackendUnavailable, RuntimeOptions
    from huse_edge.transform import load_rgb

    # what the user named must exist before the workers run: a worker's failure reads as an unavailable backend
    loaded = Bundle.load(bundle)
    variants = variants or loaded.variants
    backends = backends or ("litert", "tflite-runtime")
    for variant in variants:
        loaded.model_file(variant)
    for backend in backends:
        RuntimeOptions.from_label(backend)
    if image:
        load_rgb(image)
    rows, unavailable = [], []
    for variant in variants:
        for backend in backends:
            for count in threads or (1, 2):
                try:
                    rows.append(run_benchmark(bundle, variant, backend, count, batch, runs, image))
                except BackendUnavailable as error:
                    unavailable.append(str(error))
    if as_json:
        click.echo(json.dumps({"results": rows, "unavailable": unavailable}, indent=2))
        return
    click.echo(format_results(rows))
    for reason in unavailable:
        click.echo(f"unavailable: {reason}")


@main.group()
def android() -> None:
    """Assets and golden vectors for the Android demo (android_demo/)."""


@android.command("assets")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--index", "index_path", type=click.Path(exists=True, path_type=Path),
              help="Product index (huse-edge index) for the app's similar-products list.")
@click.option("--variant", default="int8", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("android_demo/app/src/main/assets/huse"),
              show_default=True)
@_user_errors
def android_assets(bundle, index_path, variant, out):
    """Copy one bundle variant (re-hashed manifest) and the index into the app's assets."""
    from huse_edge.android import write_assets
    from huse_edge.bundle import Bundle

    names = write_assets(Bundle.load(bundle), variant, index_path, out)
    click.echo(f"wrote {out}: {', '.join(names)}")


@android.command("golden")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.argument("catalogue", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--index", "index_path", type=click.Path(exists=True, path_type=Path))
@click.option("--variant", default="int8", show_default=True)
@click.option("--split", type=SPLIT_CHOICE, default="test", show_default=True)
@click.option("--max-products", type=click.IntRange(1))
@click.option("--category-columns", help="Comma-separated category columns, top level first.")
@_user_errors
def android_golden(bundle, catalogue, out, index_path, variant, split, max_products, category_columns):
    """Golden vectors (tokens, input tensors, embeddings, scores, search results) for the Kotlin core tests."""
    from huse_edge.android import write_golden
    from huse_edge.bundle import Bundle
    from huse_edge.catalogue import read_catalogue
    from huse_edge.runtime import HuseRuntime, RuntimeOptions
    from huse_edge.search import index_for

    products = read_catalogue(catalogue, _columns(category_columns)).split(split)[:max_products]
    runtime = HuseRuntime(Bundle.load(bundle), variant, RuntimeOptions("litert"))
    count = write_golden(runtime, products, out, index_for(index_path, runtime.bundle, variant))
    click.echo(f"wrote golden vectors of {count} products ({split} split) to {out}")


@main.group()
def data() -> None:
    """Catalogue utilities."""


@data.command("import-fashion")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("data/fashion-products"), show_default=True)
@_user_errors
def import_fashion_command(source, out):
    """Convert the published Fashion Product Images (small) folder (styles.csv + images/, in SOURCE or one folder
    below it) into a catalogue."""
    from huse_edge.fashion_import import import_fashion

    written, reports = import_fashion(source, out)
    for line in reports[:20]:
        click.echo(f"  {line}")
    click.echo(f"{written} products written to {out / 'products.csv'} ({len(reports)} rows left out)")


@data.command("shard")
@click.argument("catalogue", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory of TFRecord shards.")
@click.option("--files", "num_files", type=click.IntRange(min=1), default=16, show_default=True,
              help="Number of shard files.")
@click.option("--category-columns", help="Comma-separated category columns, top level first.")
@click.option("--strict", is_flag=True, help="Stop at the first bad catalogue row instead of skipping it.")
@_user_errors
def shard_command(catalogue, out, num_files, category_columns, strict):
    """Write CATALOGUE as TFRecord shards that `huse-edge train` streams (for catalogues too large for memory)."""
    from huse_edge.shards import write_shards

    manifest, read = write_shards(catalogue, out, num_files, _columns(category_columns), strict)
    for line in read.report_lines():
        click.echo(line)
    click.echo(f"{manifest['products']} products in {len(manifest['files'])} files under {out} "
               f"({sum(i.skipped for i in read.issues)} rows left out)")
