"""A tiny reference recipe that exercises the whole toolchain and the engine's tests.

``reference_regressor`` maps eight sensor-like features in [-1, 1] to one smooth non-linear target.
It is small enough to build in seconds, and its committed variants (``tests/models/``) are what the
engine's tests load through the real interpreters: float32, float16, dynamic-range, full int8 and
ONNX of one and the same trained network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gateway.toolchain.recipe import Dataset

FEATURES = 8


def target_function(x: np.ndarray) -> np.ndarray:
    """The function the reference model learns (column vector)."""
    y = np.sin(np.pi * x[:, 0]) * x[:, 1] + 0.5 * x[:, 2] ** 2 - 0.3 * x[:, 3] * x[:, 4] + 0.2 * x[:, 5]
    return np.asarray(y[:, np.newaxis], dtype=np.float32)


class ReferenceRegressor:
    """Recipe of ``reference_regressor``: an MLP 8-64-32-1 (teacher 8-256-256-1)."""

    name = "reference_regressor"
    version = "1.0.0"
    package_dir = "tests/models"
    epochs = 40
    batch_size = 64

    def dataset(self, seed: int) -> Dataset:
        rng = np.random.default_rng(seed)

        def split(n: int) -> tuple[np.ndarray, np.ndarray]:
            x = rng.uniform(-1.0, 1.0, size=(n, FEATURES)).astype(np.float32)
            noise = rng.normal(0.0, 0.02, size=(n, 1)).astype(np.float32)
            return x, target_function(x) + noise

        x_train, y_train = split(4000)
        x_val, y_val = split(500)
        x_test, y_test = split(1000)
        return Dataset(x_train, y_train, x_val, y_val, x_test, y_test, representative=x_train[:300])

    def build(self, role: str) -> Any:
        import keras

        widths = (256, 256) if role == "teacher" else (64, 32)
        layers: list[Any] = [keras.Input((FEATURES,), name="features")]
        layers += [keras.layers.Dense(w, activation="relu") for w in widths]
        layers.append(keras.layers.Dense(1, name="target"))
        return keras.Sequential(layers, name=f"{self.name}_{role}")

    def compile_args(self) -> dict[str, Any]:
        import keras

        return {"optimizer": keras.optimizers.Adam(3e-3), "loss": "mse"}

    def evaluate(self, predict: Callable[[np.ndarray], np.ndarray], ds: Dataset) -> dict[str, float]:
        error = np.asarray(predict(ds.x_test), dtype=np.float64).reshape(-1) - ds.y_test.reshape(-1)
        return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}
