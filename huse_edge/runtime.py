"""Runs an exported bundle on any available TFLite interpreter, with quantisation handled for the caller.

Backends (all optional; an absent one raises `BackendUnavailable` with the reason):
- `litert`: ai-edge-litert Interpreter with its default XNNPACK CPU delegate (`xnnpack=False` turns it off);
- `litert-reference`: ai-edge-litert with the reference kernels (the numerical ground truth, slow);
- `litert-compiled`: ai-edge-litert CompiledModel on the CPU, the GPU (with the CPU for the ops the GPU lacks) or an
  NPU, where the machine has them;
- `tflite-runtime`: the legacy `tflite_runtime` package many edge boards still run;
- `tf-lite`: `tf.lite.Interpreter` from a full TensorFlow install.
External delegates (GPU, Edge TPU `libedgetpu.so`, vendor NPUs) are loaded by path with their options.
This module never imports TensorFlow unless the `tf-lite` backend is asked for.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from huse_edge.bundle import Bundle
from huse_edge.frames import read_frame, write_frame
from huse_edge.transform import preprocess

BACKENDS = ("litert", "litert-reference", "litert-compiled", "tflite-runtime", "tf-lite")


class BackendUnavailable(RuntimeError):
    """The backend or delegate cannot be used on this machine; the message says why."""


class InputError(ValueError):
    """Inputs of the wrong shape or type for the model."""


@dataclass(frozen=True)
class RuntimeOptions:
    backend: str = "litert"
    threads: int | None = None
    xnnpack: bool = True
    delegate: str | None = None
    delegate_options: dict = field(default_factory=dict)
    accelerator: str = "cpu"  # litert-compiled only: cpu, gpu or npu

    @property
    def label(self) -> str:
        parts = [self.backend]
        if self.backend == "litert" and not self.xnnpack:
            parts.append("no-xnnpack")
        if self.delegate:
            parts.append(f"delegate={Path(self.delegate).name}")
        if self.backend == "litert-compiled":
            parts.append(self.accelerator)
        if self.threads:
            parts.append(f"{self.threads}t")
        return ":".join(parts)

    @classmethod
    def from_label(cls, text: str, threads: int | None = None) -> RuntimeOptions:
        """`litert`, `litert:no-xnnpack`, `litert-reference`, `litert-compiled[:cpu|gpu|npu]`, `tflite-runtime`,
        `tf-lite`: the labels `label` writes, so reports and command lines use the same names."""
        backend, _, detail = text.partition(":")
        if backend not in BACKENDS or (detail and (backend, detail) not in _DETAILS):
            choices = ", ".join(BACKENDS + tuple(f"{b}:{d}" for b, d in _DETAILS))
            raise BackendUnavailable(f"unknown backend {text!r}; choose from {choices}")
        if backend == "litert-compiled":
            return cls(backend, threads, accelerator=detail or "cpu")
        return cls(backend, threads, xnnpack=detail != "no-xnnpack")


_DETAILS = (("litert", "no-xnnpack"), ("litert-compiled", "cpu"), ("litert-compiled", "gpu"),
            ("litert-compiled", "npu"))


# What installs each backend: the edge install (`pip install huse-edge`) carries LiteRT only.
_INSTALL = {"litert": "huse-edge", "litert-reference": "huse-edge", "litert-compiled": "huse-edge",
            "tflite-runtime": "huse-edge[edge-legacy]", "tf-lite": "huse-edge[train]"}


def _not_installed(backend: str, error: ImportError) -> BackendUnavailable:
    return BackendUnavailable(f"{backend}: not installed ({error}); pip install '{_INSTALL[backend]}' adds it")


def _interpreter_module(backend: str):
    names = {"litert": "ai_edge_litert.interpreter", "litert-reference": "ai_edge_litert.interpreter",
             "tflite-runtime": "tflite_runtime.interpreter"}
    try:
        if backend == "tf-lite":
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            return importlib.import_module("tensorflow").lite
        return importlib.import_module(names[backend])
    except ImportError as error:
        raise _not_installed(backend, error) from None


def _quantise(values: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    scale, zero_point = detail["quantization"]
    if dtype in (np.int8, np.uint8, np.int16) and scale:
        info = np.iinfo(dtype)
        return np.clip(np.rint(values / scale + zero_point), info.min, info.max).astype(dtype)
    return np.asarray(values, dtype=dtype)


def _dequantise(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if values.dtype in (np.int8, np.uint8, np.int16) and scale:
        return (values.astype(np.float32) - zero_point) * scale
    return values.astype(np.float32)


# The two functions of TFLite's external delegate interface (tensorflow/lite/delegates/external).
_DELEGATE_INTERFACE = ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")


def _load_delegate(module, library: str, options: dict):
    """An external delegate, its library checked first: the interpreters' `load_delegate` leaves a half-built
    object behind when the library does not load or lacks the interface, and that object's finaliser prints a
    traceback (or, for a library without the interface, the load itself raises AttributeError)."""
    try:
        found = ctypes.CDLL(library)
    except OSError as error:
        raise BackendUnavailable(f"delegate {library}: cannot be loaded ({error})") from None
    missing = [name for name in _DELEGATE_INTERFACE if not hasattr(found, name)]
    if missing:
        raise BackendUnavailable(f"delegate {library}: not a TFLite external delegate (no {', '.join(missing)})")
    try:
        return module.load_delegate(library, options)
    except (ValueError, RuntimeError) as error:
        raise BackendUnavailable(f"delegate {library}: cannot be loaded ({error})") from None


class _InterpreterSignatures:
    """Signature runners of a classic Interpreter (LiteRT, tflite-runtime, tf.lite)."""

    def __init__(self, model_path: Path, options: RuntimeOptions):
        module = _interpreter_module(options.backend)
        kwargs: dict = {"model_path": str(model_path), "num_threads": options.threads}
        resolver = getattr(module, "OpResolverType", None)
        if options.backend == "litert-reference":
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_REF
        elif not options.xnnpack:
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if options.delegate:
            kwargs["experimental_delegates"] = [_load_delegate(module, options.delegate, options.delegate_options)]
        try:
            self.interpreter = module.Interpreter(**kwargs)
        except (ValueError, RuntimeError) as error:
            raise BackendUnavailable(f"{options.label}: cannot load {model_path.name} ({error})") from None
        self._runners: dict = {}

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if signature not in self._runners:
            self._runners[signature] = self.interpreter.get_signature_runner(signature)
        runner = self._runners[signature]
        in_details, out_details = runner.get_input_details(), runner.get_output_details()
        feed = {name: _quantise(inputs[name], in_details[name]) for name in in_details}
        try:
            raw = runner(**feed)
        except (ValueError, RuntimeError) as error:
            raise InputError(f"{signature}: {error}") from None
        return {name: _dequantise(value, out_details[name]) for name, value in raw.items()}


# LiteRT's error when an accelerator cannot take every op of a model (it names the CPU as the fallback to add).
_NOT_ALL_OPS = "Some ops are not accelerated"
# The lines of LiteRT's log that say an accelerator did not start; its exceptions name only source lines. "No
# adapters found" is logged at every GPU attempt, the NPU line only at a process's first.
_CAUSES = {"gpu": re.compile(r"Couldn't load Vulkan|No adapters found"),
           "npu": re.compile(r"NPU accelerator could not be loaded")}
_HINTS = {"gpu": "LiteRT's GPU accelerator runs on WebGPU, which on Linux needs a GPU with a Vulkan driver and "
                 "libvulkan.so.1"}


@contextlib.contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Captures what native code writes to file descriptor 2, out of Python's reach, into the yielded list."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def _without_source(line: str) -> str:
    """A LiteRT log or error line without its level, source location and tree marks."""
    return re.sub(r"^[└\s]*(Warning: |(ERROR|WARNING|INFO): )?(\[[^\]]*\])?", "", line).strip()


def _logged_causes(accelerator: str, log: list[str]) -> list[str]:
    """The lines of LiteRT's log that say `accelerator` did not start, without their source locations."""
    pattern = _CAUSES.get(accelerator)
    return [_without_source(line) for line in log if pattern and pattern.search(line)]


def _accelerator_failure(accelerator: str, causes: list[str], error: Exception | None) -> str:
    """Why an accelerator could not run a model: the causes LiteRT logged, else its error, and a hint."""
    causes = causes or [_without_source(line) for line in str(error or "").splitlines()]
    reason = "; ".join(dict.fromkeys(c for c in causes if c)) or "LiteRT did not run the model on it"
    return f"{reason} ({_HINTS[accelerator]})" if accelerator in _HINTS else reason


class _CompiledModelSignatures:
    """LiteRT's CompiledModel API: the hardware-accelerator path (CPU; the GPU through LiteRT's WebGPU accelerator,
    which needs a Vulkan driver on Linux; vendor NPUs through their dispatch libraries)."""

    def __init__(self, model_path: Path, options: RuntimeOptions):
        try:
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        except ImportError as error:
            raise _not_installed("litert-compiled", error) from None
        cpu = HardwareAccelerator.CPU
        accelerator = {"cpu": cpu, "gpu": HardwareAccelerator.GPU, "npu": HardwareAccelerator.NPU}[options.accelerator]
        # The accelerator alone first: with the CPU in the set, a machine without it would silently run on the CPU.
        with _native_stderr() as log:
            try:
                model, error = CompiledModel.from_file(str(model_path), hardware_accel=accelerator), None
            except (RuntimeError, ValueError) as raised:
                model, error = None, raised
        causes = _logged_causes(options.accelerator, log)
        if model is not None and not causes and (accelerator == cpu or model.is_fully_accelerated()):
            sys.stderr.write("".join(f"{line}\n" for line in log))  # LiteRT's log, as if it had not been captured
        elif options.accelerator == "gpu" and not causes and _NOT_ALL_OPS in str(error):
            # The GPU runs, but not every op of the model: the rest go to the CPU, as LiteRT recommends. (An absent
            # NPU fails the same way, so only the GPU, whose absence is logged at every attempt, falls back.)
            try:
                model = CompiledModel.from_file(str(model_path), hardware_accel=accelerator | cpu)
            except (RuntimeError, ValueError) as raised:
                raise BackendUnavailable(f"{options.label}: {_accelerator_failure('gpu', [], raised)}") from None
        else:
            raise BackendUnavailable(f"{options.label}: {_accelerator_failure(options.accelerator, causes, error)}")
        self.model = model

        # CompiledModel does not expose quantisation parameters; the same file's signature runners do.
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(model_path))

    def _details(self, signature: str, side: str) -> list[tuple[str, dict]]:
        """(name, details) in buffer order, with the scale and zero point of the classic signature runner."""
        compiled = getattr(self.model, f"get_{side}_tensor_details")(signature)
        runner = self._interpreter.get_signature_runner(signature)
        quantisation = getattr(runner, f"get_{side}_details")()
        return [(name, {"dtype": np.dtype(raw["dtype"]).type, "shape": tuple(raw["shape"]),
                        "quantization": quantisation[name]["quantization"]})
                for name, raw in sorted(compiled.items(), key=lambda item: item[1]["index"])]

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        in_details, out_details = self._details(signature, "input"), self._details(signature, "output")
        index = self.model.get_signature_index(signature)
        batch = len(next(iter(inputs.values())))
        outputs: dict[str, list] = {name: [] for name, _ in out_details}
        for row in range(batch):  # the CPU CompiledModel runs the static batch-1 shapes
            in_buffers = self.model.create_input_buffers(index)
            out_buffers = self.model.create_output_buffers(index)
            for buffer, (name, detail) in zip(in_buffers, in_details):
                buffer.write(_quantise(inputs[name][row: row + 1], detail).ravel())
            self.model.run_by_index(index, in_buffers, out_buffers)
            for buffer, (name, detail) in zip(out_buffers, out_details):
                raw = buffer.read(int(np.prod(detail["shape"])), detail["dtype"]).reshape(detail["shape"])
                outputs[name].append(_dequantise(raw, detail))
        return {name: np.concatenate(values) for name, values in outputs.items()}


class _IsolatedSignatures:
    """An interpreter served from its own process. tflite-runtime and TensorFlow carry clashing copies of the TFLite
    core (loading a model fails with `vector::reserve`), so a process that has imported TensorFlow, as `verify` does
    to run the Keras model, runs the legacy runtime in a worker that imports only numpy and the runtime, exactly as
    on an edge board. Requests and replies are `.npz` `frames` on the worker's stdin/stdout (no pickle)."""

    def __init__(self, model_path: Path, options: RuntimeOptions):
        command = [sys.executable, "-c", "from huse_edge.runtime import serve; serve()",
                   str(model_path), json.dumps(asdict(options))]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)
        self._receive()

    def _receive(self) -> dict[str, np.ndarray]:
        status, payload = read_frame(self._process.stdout)
        if not status:
            raise BackendUnavailable(f"tflite-runtime: the interpreter process died (exit code "
                                     f"{self._process.wait()})")
        if status == b"U":
            raise BackendUnavailable(payload.decode())
        if status == b"I":
            raise InputError(payload.decode())
        with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
            return dict(arrays)

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        write_frame(self._process.stdin, b"R", _npz({"__signature__": np.array(signature), **inputs}))
        return self._receive()

    def __del__(self):
        if getattr(self, "_process", None) is not None and self._process.poll() is None:
            self._process.stdin.close()
            self._process.wait(timeout=10)


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def serve() -> None:
    """The worker side of `_IsolatedSignatures` (`argv`: model path, options as JSON)."""
    reader, writer = sys.stdin.buffer, sys.stdout.buffer
    try:
        signatures = _InterpreterSignatures(Path(sys.argv[1]), RuntimeOptions(**json.loads(sys.argv[2])))
    except BackendUnavailable as error:
        write_frame(writer, b"U", str(error).encode())
        return
    write_frame(writer, b"K", _npz({}))
    while True:
        status, payload = read_frame(reader)
        if not status:
            return
        with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
            request = dict(arrays)
        signature = str(request.pop("__signature__"))
        try:
            write_frame(writer, b"K", _npz(signatures.run(signature, request)))
        except InputError as error:
            write_frame(writer, b"I", str(error).encode())


def _signatures_for(model_path: Path, options: RuntimeOptions):
    if options.backend == "litert-compiled":
        return _CompiledModelSignatures(model_path, options)
    if options.backend == "tflite-runtime" and "tensorflow" in sys.modules:
        return _IsolatedSignatures(model_path, options)
    return _InterpreterSignatures(model_path, options)


class HuseRuntime:
    """One bundle variant on one backend: embeddings and class probabilities from images and titles."""

    def __init__(self, bundle: Bundle, variant: str = "int8", options: RuntimeOptions = RuntimeOptions()):
        self.bundle = bundle
        self.variant = variant
        self.options = options
        if options.backend not in BACKENDS:
            raise BackendUnavailable(f"unknown backend {options.backend!r}; choose one of {', '.join(BACKENDS)}")
        self._signatures = _signatures_for(bundle.model_file(variant), options)

    def images_to_input(self, images: Sequence[str | Path | np.ndarray] | np.ndarray) -> np.ndarray:
        """Model input pixels (N, H, W, 3) float32 0..255 from files, decoded RGB arrays or a ready batch."""
        height, width = self.bundle.image_height, self.bundle.image_width
        if isinstance(images, np.ndarray) and images.ndim == 4:
            if images.shape[1:] != (height, width, 3):
                raise InputError(f"image batch must be (N, {height}, {width}, 3), got {images.shape}")
            return images.astype(np.float32)
        return np.stack([preprocess(i, height, width) for i in images]).astype(np.float32)

    def tokens(self, titles: Sequence[str]) -> np.ndarray:
        return self.bundle.tokenizer.encode_batch(titles)

    def _run(self, signature: str, **inputs: np.ndarray) -> np.ndarray:
        outputs = self._signatures.run(signature, inputs)
        return next(iter(outputs.values()))

    def embed_image(self, images: Sequence[str | Path | np.ndarray] | np.ndarray) -> np.ndarray:
        return self._run("embed_image", image=self.images_to_input(images))

    def embed_text(self, titles: Sequence[str] | np.ndarray) -> np.ndarray:
        tokens = titles if isinstance(titles, np.ndarray) else self.tokens(titles)
        if tokens.ndim != 2 or tokens.shape[1] != self.bundle.tokenizer.spec.max_length:
            raise InputError(f"tokens must be (N, {self.bundle.tokenizer.spec.max_length}), got {tokens.shape}")
        return self._run("embed_text", tokens=tokens.astype(np.int32))

    def classify(self, embeddings: np.ndarray) -> np.ndarray:
        return self._run("classify", embedding=np.asarray(embeddings, np.float32))

    def classify_product(self, images: Sequence[str | Path | np.ndarray] | np.ndarray,
                         titles: Sequence[str] | np.ndarray) -> np.ndarray:
        tokens = titles if isinstance(titles, np.ndarray) else self.tokens(titles)
        return self._run("classify_product", image=self.images_to_input(images), tokens=tokens.astype(np.int32))

    def top_k(self, probabilities: np.ndarray, k: int = 5) -> list[list[dict]]:
        """Per row: the (at most) k best classes with their full hierarchy path and probability. Classes of
        probability 0 are left out: an int8 softmax resolves probabilities to 1/256, so most classes of a confident
        prediction read exactly 0, and ranking those ties would list classes in label order as if they were
        guesses."""
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        paths = self.bundle.hierarchy.paths
        return [[{"class_id": int(c), "label": paths[c][-1], "path": list(paths[c]),
                  "score": float(row[c])} for c in top if row[c] > 0] for row, top in zip(probabilities, order)]
