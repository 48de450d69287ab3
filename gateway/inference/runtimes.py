"""The interpreters the engine can run a model with, behind one small session interface.

- LiteRT (``ai_edge_litert``) first, ``tflite_runtime`` as the fallback import (32-bit Arm),
  both driven through the same TFLite ``Interpreter`` API and the same delegate chain;
- ONNX Runtime, whose "delegates" are execution providers (TensorRT/CUDA on Jetson, CPU here).

A :class:`Session` only moves raw tensors; quantisation, statistics and reloads live in
:class:`gateway.inference.model.Model`.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from gateway.inference.spec import DelegateSpec

logger = logging.getLogger(__name__)

#: Chain entries that mean "the interpreter's own CPU kernels" (XNNPACK is LiteRT's default CPU path).
CPU_DELEGATES = frozenset({"cpu", "xnnpack"})

#: Default library of the known external delegates, per operating system.
KNOWN_DELEGATE_LIBRARIES: dict[str, dict[str, str]] = {
    "edgetpu": {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"},
    "gpu": {
        "Linux": "libtensorflowlite_gpu_delegate.so",
        "Darwin": "libtensorflowlite_gpu_delegate.dylib",
        "Windows": "tensorflowlite_gpu_delegate.dll",
    },
}

ONNX_PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


class RuntimeUnavailableError(ImportError):
    """The requested runtime's Python package is not installed."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """Name, shape, type and (per-tensor) quantisation of a model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        """True for integer tensors carrying an affine quantisation (real = scale * (q - zero_point))."""
        return self.scale != 0.0 and self.dtype.kind in "iu"


@dataclass(frozen=True, slots=True)
class DelegateAttempt:
    """A delegate of the chain that could not be used, and why."""

    delegate: str
    reason: str


class Session(Protocol):
    """A loaded model in one runtime, moving raw (already quantised) tensors."""

    runtime: str
    delegate: str
    attempts: tuple[DelegateAttempt, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- TFLite family


def import_tflite(runtime: str) -> tuple[str, ModuleType]:
    """The TFLite interpreter module for ``runtime`` ("litert", "tflite_runtime" or "auto")."""
    candidates = {
        "litert": [("litert", "ai_edge_litert.interpreter")],
        "tflite_runtime": [("tflite_runtime", "tflite_runtime.interpreter")],
        "auto": [("litert", "ai_edge_litert.interpreter"), ("tflite_runtime", "tflite_runtime.interpreter")],
    }[runtime]
    errors = []
    for name, module in candidates:
        try:
            return name, importlib.import_module(module)
        except ImportError as exc:
            errors.append(f"{module}: {exc}")
    raise RuntimeUnavailableError(
        "no TFLite interpreter available (install ai-edge-litert, or tflite-runtime on 32-bit Arm): "
        + "; ".join(errors)
    )


def delegate_library(spec: DelegateSpec) -> str | None:
    """The shared library to load for ``spec`` on this operating system, if known."""
    if spec.library:
        return spec.library
    return KNOWN_DELEGATE_LIBRARIES.get(spec.name or "", {}).get(platform.system())


def _check_delegate_library(library: str) -> None:
    """Raise OSError when ``library`` cannot be loaded, AttributeError when it is no delegate library.

    Checked before ``load_delegate``, whose ``Delegate`` object otherwise fails again noisily in its
    finaliser when the library is missing.
    """
    handle = ctypes.CDLL(library)
    if not hasattr(handle, "tflite_plugin_create_delegate"):
        raise AttributeError(f"{library} has no tflite_plugin_create_delegate: not an external delegate library")


def _tensor_info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        name=str(detail["name"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )


@dataclass(eq=False)
class TFLiteSession:
    """A TFLite interpreter with its delegate, allocated and ready to invoke."""

    interpreter: Any
    runtime: str
    delegate: str
    attempts: tuple[DelegateAttempt, ...] = ()
    keepalive: list[Any] = field(default_factory=list)  # the delegate must outlive the interpreter

    def __post_init__(self) -> None:
        interp = self.interpreter
        self.inputs = tuple(_tensor_info(d) for d in interp.get_input_details())
        self.outputs = tuple(_tensor_info(d) for d in interp.get_output_details())
        self._input_indices = [int(d["index"]) for d in interp.get_input_details()]
        self._output_indices = [int(d["index"]) for d in interp.get_output_details()]
        self._shapes = [t.shape for t in self.inputs]
        self._set = interp.set_tensor
        self._get = interp.get_tensor
        self._invoke = interp.invoke

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(feeds) != len(self._input_indices):
            raise ValueError(f"model has {len(self._input_indices)} inputs, got {len(feeds)} arrays")
        for i, (index, array) in enumerate(zip(self._input_indices, feeds)):
            if array.shape != self._shapes[i]:
                self._resize(i, index, array.shape)
            self._set(index, array)
        self._invoke()
        return [self._get(index) for index in self._output_indices]

    def fused(
        self,
        adapt: Callable[[np.ndarray], np.ndarray],
        convert: Callable[[np.ndarray], np.ndarray] | None,
    ) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
        """A call path for single-input, single-output models with the per-call work cut to the minimum.

        ``adapt`` converts the caller's array to the input tensor's type, ``convert`` the output
        tensor to real units (None: as is). Small models run in microseconds, so every Python step
        between the caller and ``invoke`` shows in their throughput.
        """
        if len(self._input_indices) != 1 or len(self._output_indices) != 1:
            raise ValueError("fused calls need exactly one input and one output")
        set_tensor, invoke, get_tensor = self._set, self._invoke, self._get
        in_index, out_index = self._input_indices[0], self._output_indices[0]
        shapes = self._shapes

        def call(feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
            if len(feeds) != 1:
                raise ValueError(f"model has 1 input, got {len(feeds)} arrays")
            array = adapt(feeds[0])
            if array.shape != shapes[0]:
                self._resize(0, in_index, array.shape)
            set_tensor(in_index, array)
            invoke()
            output = get_tensor(out_index)
            return [output if convert is None else convert(output)]

        return call

    def _resize(self, position: int, index: int, shape: tuple[int, ...]) -> None:
        """Adopt another batch size (models exported with a dynamic batch); anything else is an error."""
        expected = self.inputs[position].shape
        if len(shape) != len(expected) or tuple(shape[1:]) != expected[1:]:
            raise ValueError(
                f"input {position} ({self.inputs[position].name}) expects shape {expected} "
                f"(the batch size may differ if the model allows), got {tuple(shape)}"
            )
        previous = self._shapes[position]
        try:
            self.interpreter.resize_tensor_input(index, list(shape), strict=True)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            self.interpreter.resize_tensor_input(index, list(previous), strict=False)
            self.interpreter.allocate_tensors()
            raise ValueError(f"this model takes batches of {expected[0]} only: {exc}") from exc
        self._shapes[position] = tuple(shape)

    def close(self) -> None:
        self._set = self._get = self._invoke = _closed
        self.interpreter = None
        self.keepalive.clear()


def _closed(*_args: Any) -> Any:
    raise RuntimeError("the model has been closed")


def open_tflite(
    content: bytes,
    chain: Sequence[DelegateSpec],
    *,
    runtime: str = "auto",
    num_threads: int | None = None,
    edgetpu_content: Any = None,
) -> TFLiteSession:
    """Build an interpreter for ``content``, walking the delegate ``chain`` until one works.

    A delegate whose library is missing (``OSError``), which is not a delegate library
    (``AttributeError``), which refuses to be created (``ValueError``) or which fails when applied to
    the graph (``ValueError``/``RuntimeError``) is logged with the reason and the next is tried; the
    CPU kernels are the last resort. ``edgetpu_content`` is a callable returning the bytes of the
    ``*_edgetpu.tflite`` variant (or None when there is none), used only if the Edge TPU delegate loads.
    """
    runtime_name, module = import_tflite(runtime)
    attempts: list[DelegateAttempt] = []
    cpu_label = "cpu"
    for spec in chain:
        label = spec.label
        if spec.name in CPU_DELEGATES and not spec.library:
            cpu_label = label
            break
        library = delegate_library(spec)
        if library is None:
            attempts.append(DelegateAttempt(label, f"no known library for delegate {label!r} on this system"))
            logger.warning("delegate %s: no known library on %s; trying the next", label, platform.system())
            continue
        try:
            _check_delegate_library(library)
            delegate = module.load_delegate(library, {k: str(v) for k, v in spec.options.items()} or None)
        except (OSError, ValueError, AttributeError, RuntimeError) as exc:
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'failed to load'}"
            attempts.append(DelegateAttempt(label, reason))
            logger.warning("delegate %s (%s) unavailable, trying the next: %s", label, library, reason)
            continue
        model_content = content
        if spec.name == "edgetpu":
            variant = edgetpu_content() if edgetpu_content is not None else None
            if variant is None:
                reason = "no *_edgetpu.tflite variant of this model"
                attempts.append(DelegateAttempt(label, reason))
                logger.warning("delegate %s loaded but %s; trying the next", label, reason)
                continue
            model_content = variant
        try:
            interpreter = module.Interpreter(
                model_content=model_content, experimental_delegates=[delegate], num_threads=num_threads
            )
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'failed to apply'}"
            attempts.append(DelegateAttempt(label, reason))
            logger.warning("delegate %s loaded but failed on the model, trying the next: %s", label, reason)
            continue
        logger.info("using delegate %s (%s) with %s", label, library, runtime_name)
        return TFLiteSession(interpreter, runtime_name, label, tuple(attempts), [delegate, model_content])
    interpreter = module.Interpreter(model_content=content, num_threads=num_threads)
    interpreter.allocate_tensors()
    if attempts:
        logger.warning(
            "running on the CPU (%s): %s could not be used", cpu_label, ", ".join(a.delegate for a in attempts)
        )
    return TFLiteSession(interpreter, runtime_name, cpu_label, tuple(attempts), [content])


# --------------------------------------------------------------------------- ONNX Runtime

_ONNX_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(bool)": np.dtype(np.bool_),
}


def _onnx_info(node: Any) -> TensorInfo:
    # Symbolic (dynamic) dimensions are reported as 1: the shape of a single sample.
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in node.shape)
    return TensorInfo(name=node.name, shape=shape, dtype=_ONNX_DTYPES.get(node.type, np.dtype(np.float32)))


class OnnxSession:
    """An ONNX Runtime inference session with the first usable execution providers of the chain."""

    runtime = "onnxruntime"

    def __init__(self, content: bytes, chain: Sequence[DelegateSpec], *, num_threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailableError("onnxruntime is not installed (pip install onnxruntime)") from exc
        available = set(ort.get_available_providers())
        attempts: list[DelegateAttempt] = []
        providers: list[tuple[str, dict[str, str]]] = []
        for spec in chain:
            provider = ONNX_PROVIDERS.get((spec.name or "").lower(), spec.name or "")
            if provider not in available:
                attempts.append(DelegateAttempt(spec.label, f"execution provider {provider} not available"))
                logger.warning("execution provider %s not available here; trying the next", provider)
                continue
            providers.append((provider, {k: str(v) for k, v in spec.options.items()}))
        if all(p != "CPUExecutionProvider" for p, _ in providers):
            providers.append(("CPUExecutionProvider", {}))
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        try:
            session = ort.InferenceSession(
                content,
                sess_options=options,
                providers=[p for p, _ in providers],
                provider_options=[o for _, o in providers],
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for provider failures
            if len(providers) == 1:
                raise
            attempts.append(DelegateAttempt(providers[0][0], f"{type(exc).__name__}: {exc}"))
            logger.warning("execution providers %s failed (%s); using the CPU", [p for p, _ in providers], exc)
            session = ort.InferenceSession(content, sess_options=options, providers=["CPUExecutionProvider"])
        active = session.get_providers()[0]
        short = {v: k for k, v in ONNX_PROVIDERS.items()}
        for provider, _ in providers:
            if provider == active:
                break
            attempts.append(DelegateAttempt(short.get(provider, provider), "provider not used by the session"))
        self._session = session
        self.delegate = short.get(active, active)
        self.attempts = tuple(attempts)
        self.inputs = tuple(_onnx_info(n) for n in session.get_inputs())
        self.outputs = tuple(_onnx_info(n) for n in session.get_outputs())
        self._names = [t.name for t in self.inputs]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(feeds) != len(self._names):
            raise ValueError(f"model has {len(self._names)} inputs, got {len(feeds)} arrays")
        return list(self._session.run(None, dict(zip(self._names, feeds))))

    def close(self) -> None:
        self._session = None


def open_session(
    content: bytes,
    path_suffix: str,
    runtime: str,
    chain: Sequence[DelegateSpec],
    *,
    num_threads: int | None = None,
    edgetpu_content: Any = None,
) -> Session:
    """Open ``content`` in the runtime configured (``auto`` decides by the file's suffix)."""
    if runtime == "onnxruntime" or (runtime == "auto" and path_suffix.lower() == ".onnx"):
        return OnnxSession(content, chain, num_threads=num_threads)
    return open_tflite(content, chain, runtime=runtime, num_threads=num_threads, edgetpu_content=edgetpu_content)
