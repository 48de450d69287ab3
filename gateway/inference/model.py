"""A loaded model as plugins use it: real units in, real units out, whatever the model's types.

:class:`Model` wraps a runtime session with what every caller needs once: input quantisation and
output dequantisation from the tensors' own parameters, warm-up, latency statistics, integrity
checks, and hot reload (a file that changes on disk is verified, loaded, warmed up and swapped in;
if any step fails the previous model stays in service). Calls are serialised by a lock, so a model
may be shared, but the registry hands each pipeline worker its own instance so they never wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.inference.files import (
    ManifestEntry,
    file_signature,
    manifest_entry,
    read_labels,
    read_verified,
    resolve_path,
)
from gateway.inference.runtimes import DelegateAttempt, Session, TensorInfo, open_session
from gateway.inference.spec import ModelSpec

logger = logging.getLogger(__name__)

LATENCY_WINDOW = 2048


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Which model is in service and how it runs; stamped on results and shown in status."""

    name: str
    version: str
    sha256: str
    runtime: str
    delegate: str
    path: str
    fallbacks: tuple[DelegateAttempt, ...] = ()


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Latency of :meth:`Model.run` over the recent window (milliseconds), and the total call count."""

    count: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    reloads: int = 0
    reload_failures: int = 0


def _input_adapter(tensor: TensorInfo) -> Callable[[np.ndarray], np.ndarray]:
    """Convert a real-valued array to what ``tensor`` holds (quantised when it is quantised).

    An array already of a quantised tensor's integer type is taken as quantised values and passed
    through untouched: that is how image pipelines feed uint8 pixels to uint8 models at no cost.
    """
    rank = len(tensor.shape)
    dtype = tensor.dtype
    if tensor.quantized:
        limits = np.iinfo(dtype)
        # numpy float32 scalars: Python floats cost numpy 2 a weak-scalar promotion on every call
        inverse_scale = np.float32(1.0 / tensor.scale)
        zero_point = np.float32(tensor.zero_point)
        low, high = np.float32(limits.min), np.float32(limits.max)

        def quantise(array: np.ndarray) -> np.ndarray:
            if array.ndim == rank - 1:
                array = array[np.newaxis]
            if array.dtype == dtype:
                return array
            # Allocating ufuncs with numpy scalars: on the small inputs of sensor models the per-call
            # overhead is the cost, and `out=` keywords and np.clip are slower there.
            quantised: np.ndarray = np.maximum(np.minimum(np.rint(array * inverse_scale + zero_point), high), low)
            return quantised.astype(dtype)

        return quantise

    def cast(array: np.ndarray) -> np.ndarray:
        if array.ndim == rank - 1:
            array = array[np.newaxis]
        return array if array.dtype == dtype else array.astype(dtype)

    return cast


def _output_adapter(tensor: TensorInfo) -> Callable[[np.ndarray], np.ndarray] | None:
    """Dequantise a quantised output to float32 real units; None where the output is already real."""
    if not tensor.quantized:
        return None
    scale = np.float32(tensor.scale)
    zero_point = np.float32(tensor.zero_point)

    def dequantise(array: np.ndarray) -> np.ndarray:
        real: np.ndarray = (array.astype(np.float32) - zero_point) * scale
        return real

    return dequantise


@dataclass(slots=True)
class _Loaded:
    """One loaded generation of the model: session, identity and I/O adapters."""

    session: Session
    info: ModelInfo
    signature: tuple[tuple[int, int, int], ...]
    inputs: list[Callable[[np.ndarray], np.ndarray]]
    outputs: list[Callable[[np.ndarray], np.ndarray] | None]
    call: Callable[[Sequence[np.ndarray]], list[np.ndarray]]


def _compile_call(
    session: Session,
    inputs: list[Callable[[np.ndarray], np.ndarray]],
    outputs: list[Callable[[np.ndarray], np.ndarray] | None],
) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
    """The per-call path: real units -> raw tensors -> run -> real units."""
    fused = getattr(session, "fused", None)
    if fused is not None and len(inputs) == 1 and len(outputs) == 1:
        return fused(inputs[0], outputs[0])  # type: ignore[no-any-return]

    def call(feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        raw = session.run([adapt(a) for adapt, a in zip(inputs, feeds)])
        return [a if convert is None else convert(a) for convert, a in zip(outputs, raw)]

    return call


def _closed_call(_feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
    raise RuntimeError("the model has been closed")


class Model:
    """A model from the configuration, loaded and verified, ready for :meth:`run`.

    ``run`` takes one array (single-input models) or a sequence of arrays, in real units, with or
    without the leading batch dimension of 1, and returns the outputs in real units (float32 for
    quantised outputs). It raises ``ValueError`` on arrays of the wrong shape.
    """

    def __init__(self, name: str, spec: ModelSpec, base_dir: Path) -> None:
        self.name = name
        self.spec = spec
        self.base_dir = base_dir
        self.path = resolve_path(spec.path, base_dir)
        self.labels: list[str] | None = read_labels(spec.labels, base_dir)
        self._edgetpu_path = self.path.with_name(f"{self.path.stem}_edgetpu{self.path.suffix}")
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._count = 0
        self._reloads = 0
        self._reload_failures = 0
        self._rejected: tuple[tuple[int, int, int], ...] | None = None
        self._watch = spec.watch
        self._next_check = time.monotonic() + spec.watch_interval
        self._state = self._load()
        self._closed = False

    # ------------------------------------------------------------------ public API

    @property
    def info(self) -> ModelInfo:
        """Identity of the model in service (changes after a hot reload)."""
        return self._state.info

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        """The model's input tensors (shape, type, quantisation)."""
        return self._state.session.inputs

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        """The model's output tensors (shape, type, quantisation)."""
        return self._state.session.outputs

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of the first input, batch dimension included."""
        return self._state.session.inputs[0].shape

    def run(self, x: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Run the model on ``x`` (real units) and return its outputs (real units)."""
        if self._watch:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + self.spec.watch_interval
                self.reload_if_changed()
        feeds = (x,) if isinstance(x, np.ndarray) else x
        with self._lock:
            start = time.perf_counter()
            result = self._state.call(feeds)
            self._latencies.append(time.perf_counter() - start)
            self._count += 1
        return result

    def stats(self) -> LatencyStats:
        """Latency percentiles over the last calls, call count and reload counters."""
        with self._lock:
            samples = np.fromiter(self._latencies, dtype=np.float64)
            count = self._count
        if samples.size == 0:
            return LatencyStats(0, 0.0, 0.0, 0.0, self._reloads, self._reload_failures)
        p50, p95 = np.percentile(samples, [50, 95]) * 1000.0
        return LatencyStats(
            count, float(p50), float(p95), float(samples.mean() * 1000.0), self._reloads, self._reload_failures
        )

    def reload_if_changed(self) -> bool:
        """Reload when the file (or its manifest) changed on disk; True if a new model was swapped in.

        The new file is verified, loaded and warmed up before it replaces the one in service; if any
        step fails, the current model keeps serving and that version of the file is not retried.
        """
        if not self._reload_lock.acquire(blocking=False):
            return False  # another caller is already loading the new file
        try:
            return self._reload(self._signature())
        finally:
            self._reload_lock.release()

    def _reload(self, signature: tuple[tuple[int, int, int], ...]) -> bool:
        if signature == self._state.signature or signature == self._rejected:
            return False
        try:
            new = self._load()
            self._check_compatible(new)
        except Exception as exc:  # noqa: BLE001 - whatever the failure, the model in service stays
            self._rejected = signature
            self._reload_failures += 1
            logger.error(
                "model %s: changed file %s rejected, keeping %s (sha256 %s): %s",
                self.name,
                self.path,
                self.info.version,
                self.info.sha256[:12],
                exc,
            )
            return False
        if new.info == self._state.info:  # touched or rewritten with the same bytes: nothing to swap
            new.session.close()
            self._state.signature = new.signature
            return False
        with self._lock:
            old, self._state = self._state, new
        old.session.close()
        old.call = _closed_call
        self._reloads += 1
        logger.info(
            "model %s reloaded: sha256 %s -> %s (version %s, delegate %s)",
            self.name,
            old.info.sha256[:12],
            new.info.sha256[:12],
            new.info.version,
            new.info.delegate,
        )
        return True

    def close(self) -> None:
        """Release the interpreter; the model cannot be run afterwards."""
        with self._lock:
            if not self._closed:
                self._state.session.close()
                self._state.call = _closed_call
                self._closed = True

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        info = self.info
        return f"Model({info.name!r}, version={info.version!r}, runtime={info.runtime}, delegate={info.delegate})"

    # ------------------------------------------------------------------ loading

    def _signature(self) -> tuple[tuple[int, int, int], ...]:
        return file_signature(
            self.path, self.path.parent / "manifest.json", self.path.with_name(self.path.name + ".sha256")
        )

    def _expected(self, path: Path, pinned: str | None) -> tuple[str | None, ManifestEntry | None]:
        entry = manifest_entry(path)
        return (pinned or (entry.sha256 if entry else None)), entry

    def _load(self) -> _Loaded:
        signature = self._signature()
        expected, entry = self._expected(self.path, self.spec.sha256)
        content, digest = read_verified(self.path, expected, what=f"model {self.name!r}")
        if expected is None:
            logger.warning("model %s: no sha256 declared (config or manifest); loaded %s unverified", self.name, digest)
        used_path, used_digest = self.path, digest

        def edgetpu_variant() -> bytes | None:
            nonlocal used_path, used_digest
            if not self._edgetpu_path.is_file():
                return None
            tpu_expected, _ = self._expected(self._edgetpu_path, self.spec.edgetpu_sha256)
            tpu_content, tpu_digest = read_verified(self._edgetpu_path, tpu_expected, what=f"model {self.name!r}")
            used_path, used_digest = self._edgetpu_path, tpu_digest
            return tpu_content

        session = open_session(
            content,
            self.path.suffix,
            self.spec.runtime,
            self.spec.delegate_chain(),
            num_threads=self.spec.num_threads,
            edgetpu_content=edgetpu_variant,
        )
        version = self.spec.version or (entry.version if entry and entry.version else None) or "unversioned"
        info = ModelInfo(
            name=self.name,
            version=version,
            sha256=used_digest,
            runtime=session.runtime,
            delegate=session.delegate,
            path=str(used_path),
            fallbacks=session.attempts,
        )
        inputs = [_input_adapter(t) for t in session.inputs]
        outputs = [_output_adapter(t) for t in session.outputs]
        state = _Loaded(session, info, signature, inputs, outputs, _compile_call(session, inputs, outputs))
        try:
            for _ in range(self.spec.warmup):
                session.run([np.zeros(t.shape, dtype=t.dtype) for t in session.inputs])
        except Exception:
            session.close()
            raise
        logger.info(
            "model %s loaded: %s version %s sha256 %s via %s/%s",
            self.name,
            used_path.name,
            version,
            used_digest[:12],
            session.runtime,
            session.delegate,
        )
        return state

    def _check_compatible(self, new: _Loaded) -> None:
        # Types may change (a float32 model replaced by its int8 variant: callers work in real units),
        # shapes may not: the plugins using the model were built for them.
        old_shapes = [t.shape for t in self._state.session.inputs], [t.shape for t in self._state.session.outputs]
        new_shapes = [t.shape for t in new.session.inputs], [t.shape for t in new.session.outputs]
        if old_shapes != new_shapes:
            new.session.close()
            raise ValueError(
                f"input/output shapes changed {old_shapes} -> {new_shapes}; restart to adopt a different model"
            )


def describe(model: Model) -> dict[str, Any]:
    """A JSON-ready description of a loaded model, for status and ``models list``."""
    info = model.info
    return {
        "name": info.name,
        "version": info.version,
        "runtime": info.runtime,
        "delegate": info.delegate,
        "sha256": info.sha256,
        "path": info.path,
        "inputs": [{"shape": list(t.shape), "dtype": t.dtype.name} for t in model.inputs],
        "outputs": [{"shape": list(t.shape), "dtype": t.dtype.name} for t in model.outputs],
        "fallbacks": [{"delegate": a.delegate, "reason": a.reason} for a in info.fallbacks],
    }
