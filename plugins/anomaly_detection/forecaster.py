"""The model-based part of the detector: a small quantised forecaster shared by every series.

The network (see :mod:`plugins.anomaly_detection.recipe`) reads a window of the last values of a series,
normalised by that series' own level and spread, and predicts the next normalised value. The detector
uses the size of the miss as one more surprise signal.

Inference always goes through the gateway's engine: in a pipeline ``context.models.get(name)`` returns
the model declared in the config's ``models:`` section; the evaluation and the bench declare the shipped
file the same way (:func:`shipped_model_spec`). ``Model.run()`` takes and returns real-unit float arrays,
quantisation is the engine's business.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from gateway.inference import ModelRegistry, ModelSpec

logger = logging.getLogger(__name__)

MODEL_NAME = "anomaly_forecaster"
WINDOW = 32
DEFAULT_MODEL_FILE = f"{MODEL_NAME}_int8.tflite"


class RunnableModel(Protocol):
    """What the forecaster needs from a model: the engine's ``Model.run`` signature."""

    def run(self, x: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]: ...


class ModelForecaster:
    """Adapts a runnable model to the detector's :class:`~.detector.Forecaster` protocol."""

    def __init__(self, model: RunnableModel, window: int = WINDOW) -> None:
        self.model = model
        self.window = window
        self._buf = np.zeros((1, window), dtype=np.float32)

    def predict(self, window: list[float]) -> float:
        self._buf[0, :] = window
        return float(self.model.run(self._buf)[0].reshape(-1)[0])


def default_model_path() -> Path:
    """The shipped int8 forecaster inside this package."""
    return Path(str(resources.files("plugins.anomaly_detection") / "models" / DEFAULT_MODEL_FILE))


def shipped_model_spec() -> ModelSpec:
    """How a config declares the shipped forecaster (``models: {anomaly_forecaster: ...}``)."""
    return ModelSpec(path=f"pkg://plugins.anomaly_detection/models/{DEFAULT_MODEL_FILE}", output="raw")


@cache
def _shared_model() -> RunnableModel:
    return ModelRegistry({MODEL_NAME: shipped_model_spec()}, Path.cwd()).get(MODEL_NAME)


def load_default_forecaster() -> ModelForecaster | None:
    """The shipped forecaster loaded by the engine, or ``None`` when the file is missing."""
    path = default_model_path()
    if not path.exists():
        logger.warning("forecaster model %s not found; model signal disabled", path)
        return None
    return ModelForecaster(_shared_model())
