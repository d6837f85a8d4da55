"""The README's comparison table in one run: Keras float vs every TFLite variant of a bundle, on LiteRT and
tflite-runtime, 1 and 2 threads. Trains nothing; takes a trained model directory and its exported bundle.

    python benchmarks/compare.py MODEL_DIR BUNDLE [--catalogue CSV] [--out benchmarks/results.md]

Per row: model size, image-tower and text-tower latency (batch 1, p50), end-to-end classify latency (JPEG decode,
resize, tokenise, fused classification; batch 1, p50) and the accuracy of that variant on the test split (fused,
image-only and text-only article-type top-1, text->image class-level R@1). Accuracy depends on the model file,
not on the interpreter (`huse-edge verify` checks that), so it is measured once per variant with LiteRT. Keras runs
`predict_on_batch` (the lightest Keras predict path) with TensorFlow's default thread pools. Speed-ups are against
the Keras float image tower measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from huse_edge._tf import keras
from huse_edge.benchmark import benchmark, percentiles, time_calls
from huse_edge.bundle import Bundle
from huse_edge.evaluation_job import keras_reference
from huse_edge.model_dir import ModelDir
from huse_edge.runtime import BackendUnavailable, HuseRuntime, RuntimeOptions
from huse_edge.transform import preprocess
from huse_edge.verify import keras_view, metrics_of, run_bundle

VARIANT_NAMES = {"float": "TFLite float32", "fp16": "TFLite fp16", "dynamic": "TFLite dynamic-range",
                 "ptq_int8": "TFLite PTQ int8", "int8": "TFLite QAT int8"}
ACCURACY = ("fused_top1", "image_top1", "text_top1", "text_to_image_R@1")


def keras_latencies(model_dir: ModelDir, photo: Path, title: str, runs: int) -> dict:
    model = model_dir.keras_model()
    config = model_dir.model_config
    image_tower = keras.Model(model.inputs[0], model.get_layer("image_embedding").output)
    text_tower = keras.Model(model.inputs[1], model.get_layer("text_embedding").output)
    pixels = preprocess(photo, config.image_height, config.image_width)[None].astype(np.float32)
    tokens = model_dir.tokenizer.encode_batch([title])

    def end_to_end():
        image = preprocess(photo, config.image_height, config.image_width)[None].astype(np.float32)
        return model.predict_on_batch([image, model_dir.tokenizer.encode_batch([title])])

    return {"image": percentiles(time_calls(lambda: image_tower.predict_on_batch(pixels), runs))["p50_ms"],
            "text": percentiles(time_calls(lambda: text_tower.predict_on_batch(tokens), runs))["p50_ms"],
            "end_to_end": percentiles(time_calls(end_to_end, runs))["p50_ms"],
            "bytes": sum(p.stat().st_size for p in model_dir.path.glob("model.keras"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--catalogue", type=Path, help="default: the catalogue the model was trained on")
    parser.add_argument("--backends", default="litert,tflite-runtime")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--max-products", type=int, help="limit the test-split products used for accuracy")
    parser.add_argument("--out", type=Path, help="also write the markdown table (and JSON beside it) here")
    args = parser.parse_args()

    started = time.perf_counter()
    model_dir, bundle = ModelDir.load(args.model_dir), Bundle.load(args.bundle)
    reference = keras_reference(args.model_dir, args.catalogue, "test", args.max_products)
    product = reference.products[0]
    accuracy = {"keras": metrics_of(keras_view(reference.outputs), reference.labels, model_dir.hierarchy)}
    for variant in bundle.variants:
        outputs = run_bundle(HuseRuntime(bundle, variant, RuntimeOptions("litert")), reference.images,
                             reference.tokens)
        accuracy[variant] = metrics_of(outputs, reference.labels, model_dir.hierarchy)
    keras_ms = keras_latencies(model_dir, product.image, product.title, args.runs)

    rows = [{"model": "Keras float32 (predict_on_batch)", "runtime": "TensorFlow", "threads": "default",
             "size_mb": keras_ms["bytes"] / 1e6, "image_ms": keras_ms["image"], "text_ms": keras_ms["text"],
             "classify_ms": keras_ms["end_to_end"], **{k: accuracy["keras"][k] for k in ACCURACY}}]
    unavailable = []
    for variant in bundle.variants:
        for backend in args.backends.split(","):
            for threads in (int(t) for t in args.threads.split(",")):
                try:
                    result = benchmark(args.bundle, variant, backend, threads, 1, args.runs, product.image)
                except BackendUnavailable as error:
                    unavailable.append(str(error))
                    continue
                timed = result["signatures"]
                rows.append({"model": VARIANT_NAMES.get(variant, variant), "variant": variant, "runtime": backend,
                             "threads": threads, "size_mb": result["model_bytes"] / 1e6,
                             "image_ms": timed["embed_image"]["p50_ms"], "text_ms": timed["embed_text"]["p50_ms"],
                             "classify_ms": timed["end_to_end_classify"]["p50_ms"],
                             **{k: accuracy[variant][k] for k in ACCURACY}})
    for row in rows:
        row["image_speedup_vs_keras"] = keras_ms["image"] / row["image_ms"]

    table = ["| model | runtime | threads | size MB | image tower ms | text tower ms | classify e2e ms | "
             "fused top-1 | image top-1 | text top-1 | T→I R@1 | image ×Keras |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        table.append(f"| {r['model']} | {r['runtime']} | {r['threads']} | {r['size_mb']:.2f} | {r['image_ms']:.2f} | "
                     f"{r['text_ms']:.3f} | {r['classify_ms']:.2f} | {r['fused_top1']:.4f} | {r['image_top1']:.4f} | "
                     f"{r['text_top1']:.4f} | {r['text_to_image_R@1']:.4f} | {r['image_speedup_vs_keras']:.1f}× |")
    ratios = []
    for r in rows:
        if r.get("variant") == "int8":
            float_row = next((f for f in rows if f.get("variant") == "float" and f["runtime"] == r["runtime"]
                              and f["threads"] == r["threads"]), None)
            if float_row:
                threads = f"{r['threads']} thread{'s' * (r['threads'] != 1)}"
                ratios.append(f"QAT int8 image tower on {r['runtime']} ({threads}): "
                              f"{float_row['image_ms'] / r['image_ms']:.1f}× the float TFLite tower, "
                              f"{r['image_speedup_vs_keras']:.1f}× Keras float predict")
    float_size = next((r["size_mb"] for r in rows if r.get("variant") == "float"), None)
    int8_size = next((r["size_mb"] for r in rows if r.get("variant") == "int8"), None)
    if float_size and int8_size:
        ratios.append(f"QAT int8 file: {100 * int8_size / float_size:.1f}% of the float TFLite file")
    footer = f"test-split products: {len(reference.labels)}; run took {time.perf_counter() - started:.0f} s"
    text = "\n".join(table + [""] + ratios + [f"unavailable: {u}" for u in unavailable] + [footer])
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps({"rows": rows, "unavailable": unavailable}, indent=2))


if __name__ == "__main__":
    main()
