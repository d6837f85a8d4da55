"""`huse-edge benchmark`: latency, throughput, memory and arithmetic cost of a bundle, per signature and backend.

Every (variant, backend, threads) combination runs in a fresh worker process, so its peak RSS is that runtime's
own footprint (model, arena, delegate) and the legacy tflite-runtime never shares a process with another TFLite
core. In each worker: warm-up calls, then timed calls of each signature at the requested batch, plus the
end-to-end `classify` path of an app (JPEG decode + resize + tokenise + `classify_product`, batch 1).

Arithmetic cost is counted from the graph: multiply-accumulates of CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED (the rest is a few percent). The practical peak is what this CPU reaches on a large float32
matrix product through numpy's BLAS with the same thread count; `peak_fraction` = 2 x MACs / latency / peak. For
int8 models that float peak is only a yardstick (int8 dot-product units may exceed it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from huse_edge.memory import peak_rss_mb

TIMED_SIGNATURES = ("embed_image", "embed_text", "classify", "classify_product")
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def model_macs(model_path: Path) -> int:
    """Multiply-accumulates of one batch-1 call of a single-signature model."""
    from huse_edge.tolerance import reference_interpreter

    interpreter = reference_interpreter(model_path)
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}
    total = 0
    for op in interpreter._get_ops_details():
        if op["op_name"] not in MAC_OPS:
            continue
        out = shapes[op["outputs"][0]]
        weights = shapes[op["inputs"][1]]
        outputs = int(np.prod(out))
        if op["op_name"] == "CONV_2D":  # filter (out, kh, kw, in)
            total += outputs * int(np.prod(weights[1:]))
        elif op["op_name"] == "DEPTHWISE_CONV_2D":  # filter (1, kh, kw, channels)
            total += outputs * weights[1] * weights[2]
        else:  # weights (out, in)
            total += outputs * weights[1]
    return total


def percentiles(seconds: list[float]) -> dict:
    ms = 1000 * np.asarray(seconds)
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99))}


def time_calls(call, runs: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def practical_peak_gflops(size: int = 1024, runs: int = 5) -> float:
    """float32 GFLOP/s of numpy's BLAS on a large matrix product (threads set by the caller's environment)."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    best = min(time_calls(lambda: a @ a, runs, warmup=2))
    return 2 * size ** 3 / best / 1e9


def _sample_jpeg(height: int, width: int, folder: Path) -> Path:
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path = folder / "sample.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def run_worker(bundle_path: str, variant: str, backend: str, threads: int | None, batch: int, runs: int,
               image: str | None) -> dict:
    """Benchmarks one variant on one backend in this process (call it in a fresh one: see `benchmark`)."""
    from huse_edge.bundle import Bundle
    from huse_edge.runtime import HuseRuntime, RuntimeOptions

    bundle = Bundle.load(bundle_path)
    runtime = HuseRuntime(bundle, variant, RuntimeOptions.from_label(backend, threads))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (batch, bundle.image_height, bundle.image_width, 3)).astype(np.float32)
    titles = ["Nike Men Black Running Shoes"] * batch
    tokens = runtime.tokens(titles)
    embedding = runtime.embed_text(tokens)
    calls = {"embed_image": lambda: runtime.embed_image(pixels), "embed_text": lambda: runtime.embed_text(tokens),
             "classify": lambda: runtime.classify(embedding),
             "classify_product": lambda: runtime.classify_product(pixels, tokens)}
    results: dict = {"variant": variant, "backend": runtime.options.label, "threads": threads, "batch": batch,
                     "model_bytes": bundle.model_file(variant).stat().st_size, "signatures": {}}
    for signature, call in calls.items():
        stats = percentiles(time_calls(call, runs))
        stats["products_per_s"] = batch / (stats["p50_ms"] / 1000)
        results["signatures"][signature] = stats
    with tempfile.TemporaryDirectory() as folder:
        photo = image or str(_sample_jpeg(80, 60, Path(folder)))
        e2e = percentiles(time_calls(lambda: runtime.classify_product([photo], titles[:1]), runs))
    results["signatures"]["end_to_end_classify"] = e2e
    results["peak_rss_mb"] = peak_rss_mb()
    results["practical_peak_gflops"] = practical_peak_gflops()
    return results


def worker_main() -> None:
    """Entry point of a worker process: argv[1] is the JSON of `run_worker`'s arguments. A runtime that cannot
    load or run the model answers `{"error": reason}` (e.g. tflite-runtime 2.14 and dynamic-range op versions)."""
    try:
        print(json.dumps(run_worker(**json.loads(sys.argv[1]))))
    except Exception as error:  # noqa: BLE001 - any runtime failure is this backend's answer, reported as such
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(json.dumps({"error": f"{type(error).__name__}: {first_line}"}))


def benchmark(bundle_path: str | Path, variant: str, backend: str, threads: int | None = None, batch: int = 1,
              runs: int = 50, image: str | Path | None = None) -> dict:
    """One worker process's figures, with each tower's arithmetic cost and the achieved fraction of peak."""
    from huse_edge.bundle import Bundle
    from huse_edge.runtime import BackendUnavailable

    env = dict(os.environ)
    if threads:  # numpy's BLAS (the peak yardstick) uses the same thread count as the interpreter
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    arguments = {"bundle_path": str(bundle_path), "variant": variant, "backend": backend, "threads": threads,
                 "batch": batch, "runs": runs, "image": str(image) if image else None}
    process = subprocess.run([sys.executable, "-c", "from huse_edge.benchmark import worker_main; worker_main()",
                              json.dumps(arguments)], capture_output=True, text=True, env=env)
    lines = process.stdout.strip().splitlines()
    if process.returncode != 0 or not lines:
        raise BackendUnavailable(f"{backend} ({variant}): benchmark worker died (exit code {process.returncode})")
    results = json.loads(lines[-1])
    if "error" in results:
        raise BackendUnavailable(f"{backend} ({variant}): {results['error']}")
    bundle = Bundle.load(bundle_path, verify=False)
    peak = results["practical_peak_gflops"]
    for signature in TIMED_SIGNATURES:
        macs = model_macs(bundle.model_file(variant, signature)) * batch
        stats = results["signatures"][signature]
        stats["macs"] = macs
        stats["gmacs_per_s"] = macs / (stats["p50_ms"] / 1000) / 1e9
        stats["peak_fraction"] = 2 * stats["gmacs_per_s"] / peak if peak else None
    return results


def format_results(rows: list[dict]) -> str:
    header = (f"{'variant':<9}{'backend':<22}{'signature':<21}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}"
              f"{'prod/s':>9}{'MMACs':>8}{'peak%':>7}{'RSS MB':>8}{'size MB':>9}")
    lines = [header]
    for row in rows:
        for signature, stats in row["signatures"].items():
            macs = f"{stats['macs'] / 1e6:>8.1f}" if "macs" in stats else f"{'':>8}"
            peak = f"{100 * stats['peak_fraction']:>6.1f}%" if stats.get("peak_fraction") else f"{'':>7}"
            rate = f"{stats['products_per_s']:>9.0f}" if "products_per_s" in stats else f"{'':>9}"
            lines.append(f"{row['variant']:<9}{row['backend']:<22}{signature:<21}{stats['p50_ms']:>8.2f}"
                         f"{stats['p90_ms']:>8.2f}{stats['p99_ms']:>8.2f}{rate}{macs}{peak}"
                         f"{row['peak_rss_mb']:>8.0f}{row['model_bytes'] / 1e6:>9.2f}")
    return "\n".join(lines)
