"""Parity tolerances read from the quantisation of an exported model, instead of guessed `allclose` numbers.

Two int8 kernels for the same op (XNNPACK, the reference kernels, a delegate) may round an op's result
differently by one step of its output grid. The last computing op of a signature is often followed by a tail of
pure requantisations (QUANTIZE/DEQUANTIZE: e.g. TFLite's int8 L2_NORMALIZATION always writes a 1/128 grid, which
the converter then requantises to the output's calibrated scale); each of them can turn a one-step difference
into one more step of its own grid. The tolerance of an output is therefore the sum of one step of every grid from
the last computing op to the output. It holds where the inputs of that op agree to within a step; it is a unit for
reporting how far a backend is from the reference kernels, not a bound for deep towers ending in an L2
normalisation, whose input differences it amplifies by 1/|x| (see `verify`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

REQUANTISATIONS = ("QUANTIZE", "DEQUANTIZE")


def reference_interpreter(model_path: Path):
    """An interpreter on the reference kernels: for reading a model's graph and the numerical ground truth."""
    for name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.Interpreter(model_path=str(model_path),
                                  experimental_op_resolver_type=module.OpResolverType.BUILTIN_REF)
    raise ImportError("no TFLite interpreter installed (ai-edge-litert or tflite-runtime)")


def output_grids(model_path: Path) -> dict[str, list[float]]:
    """Per output of a single-signature model: the scales from the output back to its last computing op."""
    interpreter = reference_interpreter(model_path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    producer = {out: op for op in interpreter._get_ops_details() for out in op["outputs"]}
    grids: dict[str, list[float]] = {}
    for name, detail in interpreter.get_signature_runner().get_output_details().items():
        index, scales = detail["index"], []
        while True:
            scale = tensors[index]["quantization"][0]
            if scale:
                scales.append(float(scale))
            op = producer.get(index)
            if op is None or op["op_name"] not in REQUANTISATIONS:
                break
            index = op["inputs"][0]
        grids[name] = scales
    return grids


def step_tolerances(model_path: Path) -> dict[str, float]:
    """Per output: the largest difference (in output units) two conforming int8 kernels may produce."""
    return {name: sum(scales) for name, scales in output_grids(model_path).items()}
