"""The model component: a machine-agnostic int8 forecaster whose surprise is one more feature.

The shipped model (``models/pdm_forecaster_int8.tflite``, trained by :mod:`.recipe` on simulated
machines only) predicts the next sample of one channel from its previous ``input_length`` samples.
Inputs are made scale-free per window (minus the newest sample, over the window's standard deviation,
:func:`forecast_inputs`), so one network serves any machine, channel and unit. The absolute forecast
error of the newest sample, in the same scale-free units (the *innovation*), is large for sudden
changes a smooth channel cannot explain (steps, impulses, oscillation onsets) and ordinary for noise.
It becomes one more feature per channel, scaled and thresholded per machine by the learning period
like every other one.

:class:`InnovationScorer` wraps anything with ``run(x) -> list[np.ndarray]`` in real units: a
:class:`gateway.inference.Model` from the engine, or :class:`TFLiteModel` when the plugin is used
outside a gateway (notebooks, quick checks).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

DEFAULT_MODEL_FILE = "pdm_forecaster_int8.tflite"
PACKAGE_MODEL_URI = f"pkg://plugins.predictive_maintenance/models/{DEFAULT_MODEL_FILE}"


class RunnableModel(Protocol):
    """What the scorer needs from a model (the engine's ``Model`` satisfies it)."""

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    def run(self, x: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]: ...


def forecast_inputs(
    window: NDArray[np.floating[Any]], following: NDArray[np.floating[Any]] | None = None, clip: float = 8.0
) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    """Scale-free model inputs of ``window`` rows (and of the ``following`` sample, the target).

    Each row minus its newest sample, over its standard deviation; a row with no variation gives
    zeros. Values are clipped to ``±clip`` (the int8 input range is calibrated on normal data).
    """
    x = np.asarray(window, dtype=np.float64)
    last = x[..., -1:]
    sd = np.maximum(x.std(axis=-1, keepdims=True), 1e-9)
    inputs = np.clip((x - last) / sd, -clip, clip).astype(np.float32)
    if following is None:
        return inputs, None
    target = np.clip((np.asarray(following, dtype=np.float64) - last[..., 0]) / sd[..., 0], -clip, clip)
    return inputs, target.astype(np.float32)


class InnovationScorer:
    """Per-channel absolute one-step forecast error of the newest sample (scale-free units)."""

    def __init__(self, model: RunnableModel) -> None:
        self.model = model
        self.input_length = int(tuple(model.input_shape)[-1])

    @property
    def context_length(self) -> int:
        """Samples needed per channel: the model's input plus the sample being judged."""
        return self.input_length + 1

    def score(self, samples: NDArray[np.float64]) -> NDArray[np.float64]:
        """Innovation per channel of ``samples`` (channels, n); 0 until enough samples are buffered."""
        if samples.shape[-1] < self.context_length:
            return np.zeros(samples.shape[0])
        ctx = samples[:, -self.context_length :]
        x, target = forecast_inputs(ctx[:, :-1], ctx[:, -1])
        assert target is not None
        out = np.empty(x.shape[0], dtype=np.float64)
        for i in range(x.shape[0]):
            out[i] = abs(float(self.model.run(x[i : i + 1])[0].reshape(-1)[0]) - float(target[i]))
        return out


class TFLiteModel:
    """Minimal LiteRT runner with the engine's ``run`` contract (real units in and out).

    Used where no gateway engine is at hand; inside a pipeline the plugin takes its model from the
    engine (``context.models``) so the configured runtime, delegates and checksums apply.
    """

    def __init__(self, path: str | Path, num_threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover - 32-bit Arm
            from tflite_runtime.interpreter import Interpreter
        self.path = Path(path)
        self._interp = Interpreter(model_path=str(self.path), num_threads=num_threads)
        self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._in["shape"])

    def run(self, x: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        arr = np.asarray(x if isinstance(x, np.ndarray) else x[0], dtype=np.float32).reshape(self.input_shape)
        dtype = self._in["dtype"]
        scale, zero = self._in["quantization"]
        if dtype in (np.int8, np.uint8) and scale:
            info = np.iinfo(dtype)
            arr = np.clip(np.round(arr / scale + zero), info.min, info.max).astype(dtype)
        self._interp.set_tensor(self._in["index"], arr)
        self._interp.invoke()
        out = self._interp.get_tensor(self._out["index"])
        o_scale, o_zero = self._out["quantization"]
        if out.dtype in (np.int8, np.uint8) and o_scale:
            out = (out.astype(np.float32) - o_zero) * o_scale
        return [out.astype(np.float32)]


def packaged_model_path(filename: str = DEFAULT_MODEL_FILE) -> Path:
    """Path of a model shipped in this package's ``models/`` directory."""
    return Path(__file__).resolve().parent / "models" / filename
