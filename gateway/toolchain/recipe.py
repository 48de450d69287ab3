"""What a model recipe is: the data, the network and the task metric of one shipped model.

A recipe describes *what* to train; the toolchain (:mod:`gateway.toolchain.build`) decides *how*:
training, optional magnitude pruning and knowledge distillation, conversion to every ``.tflite``
variant (float32, float16, dynamic-range, full int8) and the ONNX export. Plugins register their
recipes in the ``edge_gateway.model_recipes`` entry-point group (name -> ``"module:Class"``).

TensorFlow is never imported here, so plugins can define recipes without the ``[train]`` extra.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

ENTRY_POINT_GROUP = "edge_gateway.model_recipes"

#: The ``.tflite`` variants the toolchain writes, as ``<name>_<variant>.tflite``.
VARIANTS: tuple[str, ...] = ("float32", "float16", "dynamic", "int8")


@dataclass
class Dataset:
    """Train/validation/test splits of a recipe, plus the samples used to calibrate int8 quantisation.

    ``representative`` holds model inputs only (no labels); a few hundred samples drawn from the
    training distribution are enough to calibrate the activation ranges.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    representative: np.ndarray


@runtime_checkable
class Recipe(Protocol):
    """A reproducible description of one model the gateway ships.

    ``name`` is the model name and file stem (``<name>_<variant>.tflite`` in ``package_dir``).
    ``build("student")`` returns the network at its shipped size; ``build("teacher")`` a larger one
    used only when distilling. ``evaluate`` receives a prediction function (batch of inputs -> batch
    of outputs, real units) and returns task metrics; its first key is the headline metric.
    """

    name: str
    version: str
    package_dir: str
    epochs: int
    batch_size: int

    def dataset(self, seed: int) -> Dataset:
        """Generate or load the data deterministically from ``seed``."""
        ...

    def build(self, role: str) -> keras.Model:
        """An uncompiled Keras model for ``role`` ("student" or "teacher")."""
        ...

    def compile_args(self) -> dict[str, Any]:
        """Keyword arguments for ``keras.Model.compile`` (loss, optimizer, metrics)."""
        ...

    def evaluate(self, predict: Callable[[np.ndarray], np.ndarray], ds: Dataset) -> dict[str, float]:
        """Task metrics of ``predict`` on ``ds``'s test split; the first key is the headline metric."""
        ...
