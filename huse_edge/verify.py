"""`huse-edge verify`: does the shipped bundle behave like the trained model on each interpreter and delegate?

For every selected backend the bundle's four signatures run over a catalogue split and are compared with the float
Keras model: fused/image/text top-1, fused top-1 agreement with the float model, embedding cosine to float (mean
and 1st percentile), max |Δ| per output in steps of that output's quantisation grid, class-level retrieval R@1 and
latency. A backend passes when
- its fused top-1 agrees with the float model on at least `min_agreement` of the products,
- its fused top-1 accuracy is at most `max_top1_drop` points below the float model's, and its image-only and
  text-only top-1 at most `max_modality_drop` points (a broken tower can hide behind a strong other one).
For quantised variants it also reports how far each backend's embeddings are from the reference kernels', in
units of the step tolerance read from the model (see `tolerance`). That figure is diagnostic, not a gate: the
one-step bound holds for each op, but the image tower stacks ~60 of them before an L2 normalisation that
amplifies input differences by 1/|x|, and 2-step differences were measured between XNNPACK and the reference
kernels on correct models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from huse_edge.bundle import Bundle
from huse_edge.evaluate import evaluate_outputs, softmax
from huse_edge.hierarchy import LabelHierarchy
from huse_edge.runtime import BackendUnavailable, HuseRuntime, RuntimeOptions
from huse_edge.tolerance import output_grids

REFERENCE = RuntimeOptions("litert-reference")
DEFAULT_BACKENDS = (RuntimeOptions("litert"), RuntimeOptions("litert", xnnpack=False), REFERENCE,
                    RuntimeOptions("litert-compiled"), RuntimeOptions("litert-compiled", accelerator="gpu"),
                    RuntimeOptions("tflite-runtime"), RuntimeOptions("tf-lite"))
EMBEDDINGS = ("image_embedding", "text_embedding")
# the metrics each backend reports beside the float model's (fused_ece: is a threshold on probability still valid?)
HEADLINE_METRICS = ("fused_top1", "image_top1", "text_top1", "text_to_image_R@1", "image_to_text_R@1", "fused_ece")
# output name -> (signature file whose output grid measures it, Keras output it is compared with)
GRIDS = {"image_embedding": "embed_image", "text_embedding": "embed_text", "image_probabilities": "classify",
         "text_probabilities": "classify", "fused_probabilities": "classify_product"}


@dataclass(frozen=True)
class ParityLimits:
    min_agreement: float = 0.99
    max_top1_drop: float = 0.5  # points of fused top-1
    max_modality_drop: float = 2.0  # points of image-only and text-only top-1
    latency_products: int = 20  # single-product calls timed per backend


@dataclass
class BackendResult:
    label: str
    status: str  # "pass", "fail" or "unavailable"
    reason: str = ""
    metrics: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)


@dataclass
class VerifyResult:
    variant: str
    split: str
    float_metrics: dict
    float_outputs: dict
    labels: np.ndarray
    class_paths: tuple
    products: list
    backends: list[BackendResult]

    @property
    def passed(self) -> bool:
        ran = [b for b in self.backends if b.status != "unavailable"]
        return bool(ran) and all(b.status == "pass" for b in ran)


def run_bundle(runtime: HuseRuntime, images: np.ndarray, tokens: np.ndarray, batch: int = 64) -> dict:
    """Every signature of the bundle over all products, in the names of the Keras model's outputs."""
    parts: dict[str, list] = {}
    for start in range(0, len(tokens), batch):
        pixels, ids = images[start: start + batch], tokens[start: start + batch]
        image, text = runtime.embed_image(pixels), runtime.embed_text(ids)
        for name, value in (("image_embedding", image), ("text_embedding", text),
                            ("image_probabilities", runtime.classify(image)),
                            ("text_probabilities", runtime.classify(text)),
                            ("fused_probabilities", runtime.classify_product(pixels, ids))):
            parts.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in parts.items()}


def keras_view(outputs: dict) -> dict:
    """Keras model outputs renamed and softmaxed to match `run_bundle`."""
    return {"image_embedding": outputs["image_embedding"], "text_embedding": outputs["text_embedding"],
            "image_probabilities": softmax(outputs["image_logits"]),
            "text_probabilities": softmax(outputs["text_logits"]),
            "fused_probabilities": outputs["fused_probabilities"]}


def metrics_of(outputs: dict, labels: np.ndarray, hierarchy: LabelHierarchy) -> dict:
    as_model = {"image_logits": outputs["image_probabilities"], "text_logits": outputs["text_probabilities"],
                "image_embedding": outputs["image_embedding"], "text_embedding": outputs["text_embedding"],
                "fused_probabilities": outputs["fused_probabilities"]}
    return evaluate_outputs(as_model, labels, hierarchy)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of `a` with the same row of `b`."""
    return np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def _latency_ms(runtime: HuseRuntime, images: np.ndarray, tokens: np.ndarray) -> dict:
    runtime.classify_product(images[:1], tokens[:1])  # warm-up: delegate preparation, allocation
    times = []
    for i in range(len(tokens)):
        start = time.perf_counter()
        runtime.classify_product(images[i: i + 1], tokens[i: i + 1])
        times.append(1000 * (time.perf_counter() - start))
    return {"latency_p50_ms": float(np.percentile(times, 50)), "latency_p90_ms": float(np.percentile(times, 90))}


def compare(outputs: dict, reference: dict, float_metrics: dict, labels: np.ndarray, hierarchy: LabelHierarchy,
            grids: dict[str, list[float]]) -> dict:
    """Accuracy, agreement, cosine and step differences of one backend against the float Keras model."""
    metrics = metrics_of(outputs, labels, hierarchy)
    result = {key: metrics[key] for key in HEADLINE_METRICS}
    result["agreement_with_float"] = float(np.mean(np.argmax(outputs["fused_probabilities"], 1)
                                                   == np.argmax(reference["fused_probabilities"], 1)))
    for kind in ("fused", "image", "text"):
        result[f"{kind}_top1_drop_points"] = 100 * (float_metrics[f"{kind}_top1"] - metrics[f"{kind}_top1"])
    for name in EMBEDDINGS:
        cosine = row_cosines(outputs[name], reference[name])
        result[f"{name}_cosine_mean"] = float(np.mean(cosine))
        result[f"{name}_cosine_p1"] = float(np.percentile(cosine, 1))
    for name, signature in GRIDS.items():
        difference = float(np.max(np.abs(outputs[name] - reference[name])))
        step = grids[signature][0] if grids[signature] else 0.0
        result[f"{name}_max_abs_diff"] = difference
        result[f"{name}_max_diff_steps"] = difference / step if step else None
    return result


def verify(bundle: Bundle, variant: str, images: np.ndarray, tokens: np.ndarray, labels: np.ndarray,
           keras_outputs: dict, backends: Sequence[str] = DEFAULT_BACKENDS, limits: ParityLimits = ParityLimits(),
           products: list | None = None, split: str = "test") -> VerifyResult:
    """Runs each backend and judges it against the float Keras outputs (see the module docstring)."""
    reference = keras_view(keras_outputs)
    float_metrics = metrics_of(reference, labels, bundle.hierarchy)
    grids = {signature: next(iter(output_grids(bundle.model_file(variant, signature)).values()))
             for signature in set(GRIDS.values())}
    quantised = bool(grids["embed_image"])
    tolerances = {name: sum(grids[GRIDS[name]]) for name in EMBEDDINGS}
    order = list(backends)
    if quantised and REFERENCE not in order:
        order.insert(0, REFERENCE)  # the ground truth every optimised kernel is held to
    order.sort(key=lambda options: options != REFERENCE)
    kernel_truth: dict | None = None
    results = []
    for options in order:
        try:
            runtime = HuseRuntime(bundle, variant, options)
            outputs = run_bundle(runtime, images, tokens)
        except BackendUnavailable as error:
            results.append(BackendResult(options.label, "unavailable", str(error)))
            continue
        metrics = compare(outputs, reference, float_metrics, labels, bundle.hierarchy, grids)
        metrics.update(_latency_ms(runtime, images[: limits.latency_products], tokens[: limits.latency_products]))
        failures = []
        if metrics["agreement_with_float"] < limits.min_agreement:
            failures.append(f"agrees with float on {metrics['agreement_with_float']:.2%} of products "
                            f"(< {limits.min_agreement:.0%})")
        for kind in ("fused", "image", "text"):
            limit = limits.max_top1_drop if kind == "fused" else limits.max_modality_drop
            if metrics[f"{kind}_top1_drop_points"] > limit:
                failures.append(f"{kind} top-1 {metrics[f'{kind}_top1_drop_points']:.2f} points below float "
                                f"(> {limit})")
        if quantised and options == REFERENCE:
            kernel_truth = outputs
        elif quantised and kernel_truth is not None:
            for name in EMBEDDINGS:
                off = float(np.max(np.abs(outputs[name] - kernel_truth[name])))
                metrics[f"{name}_vs_reference_kernels_tolerances"] = off / tolerances[name]
        results.append(BackendResult(options.label, "fail" if failures else "pass", "; ".join(failures), metrics,
                                     outputs))
    return VerifyResult(variant, split, float_metrics, reference, labels, bundle.hierarchy.paths, products or [],
                        results)


def format_result(result: VerifyResult) -> str:
    """One row per backend with the headline parity figures; the backend column widens for a long label (a
    delegate's path)."""
    width = max(28, *(len(backend.label) + 2 for backend in result.backends))
    header = (f"{'backend':<{width}}{'status':<12}{'fused':>7}{'image':>7}{'text':>7}{'agree':>8}{'cos img':>8}"
              f"{'cos p1':>8}{'Δ steps':>8}{'T→I R@1':>8}{'p50 ms':>8}")
    float_m = result.float_metrics
    lines = [f"verify {result.variant} on the {result.split} split ({len(result.labels)} products)", header,
             f"{'keras float':<{width}}{'reference':<12}{float_m['fused_top1']:>7.4f}{float_m['image_top1']:>7.4f}"
             f"{float_m['text_top1']:>7.4f}{1:>8.4f}{1:>8.4f}{1:>8.4f}{0:>8}{float_m['text_to_image_R@1']:>8.4f}"]
    for backend in result.backends:
        if backend.status == "unavailable":
            lines.append(f"{backend.label:<{width}}{'unavailable':<12}{backend.reason}")
            continue
        m = backend.metrics
        steps = m["image_embedding_max_diff_steps"]
        lines.append(f"{backend.label:<{width}}{backend.status:<12}{m['fused_top1']:>7.4f}{m['image_top1']:>7.4f}"
                     f"{m['text_top1']:>7.4f}{m['agreement_with_float']:>8.4f}"
                     f"{m['image_embedding_cosine_mean']:>8.4f}{m['image_embedding_cosine_p1']:>8.4f}"
                     f"{'-' if steps is None else f'{steps:.0f}':>8}{m['text_to_image_R@1']:>8.4f}"
                     f"{m['latency_p50_ms']:>8.2f}")
        if backend.reason:
            lines.append(f"    {backend.reason}")
    lines.append("PASS" if result.passed else "FAIL")
    return "\n".join(lines)


def summary(result: VerifyResult) -> dict:
    """JSON-ready figures (no arrays)."""
    return {"variant": result.variant, "split": result.split, "products": int(len(result.labels)),
            "passed": result.passed, "float": {k: result.float_metrics[k] for k in HEADLINE_METRICS},
            "backends": [{"backend": b.label, "status": b.status, "reason": b.reason, **b.metrics}
                         for b in result.backends]}


def default_model_dir(bundle: Bundle) -> Path | None:
    """Where the model a bundle was exported from lives, if it is still there."""
    recorded = bundle.manifest.get("source_model_dir")
    for candidate in (Path(recorded) if recorded else None, bundle.path.parent):
        if candidate is not None and (candidate / "metrics.json").is_file():
            return candidate
    return None
