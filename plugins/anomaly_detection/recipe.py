"""Model recipe of the anomaly forecaster: synthetic series in, next normalised value out.

The training data is generated here, never taken from a benchmark: random mixtures of daily-like
cycles (sine, square, sawtooth), random walks, autoregressive noise, slow trends and rare level shifts,
at random amplitudes and noise levels. Each series is normalised online exactly as the detector does it
(exponentially weighted level and mean absolute deviation, clipped to +/-10), and the network learns to
predict the next normalised value from the previous :data:`~.forecaster.WINDOW` ones.

TensorFlow is imported lazily, only by :meth:`AnomalyForecasterRecipe.build`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.toolchain.recipe import Dataset
from plugins.anomaly_detection.detector import DetectorConfig, ExpStats
from plugins.anomaly_detection.forecaster import MODEL_NAME, WINDOW

if TYPE_CHECKING:  # pragma: no cover
    import keras


def synthetic_series(rng: np.random.Generator, length: int) -> np.ndarray:
    """One random series of the kinds sensors produce (without labelled anomalies)."""
    t = np.arange(length, dtype=np.float64)
    period = rng.uniform(12, 300)
    phase = rng.uniform(0, 2 * np.pi)
    kind = rng.integers(0, 5)
    if kind == 0:
        base = np.sin(2 * np.pi * t / period + phase)
    elif kind == 1:
        base = np.sign(np.sin(2 * np.pi * t / period + phase))
    elif kind == 2:
        base = ((t / period + phase) % 1.0) * 2 - 1
    elif kind == 3:
        base = np.cumsum(rng.normal(0, 1, length)) / np.sqrt(length) * 3
    else:
        base = np.zeros(length)
        e = rng.normal(0, 1, length)
        phi = rng.uniform(0.5, 0.99)
        for i in range(1, length):
            base[i] = phi * base[i - 1] + e[i]
        base /= base.std() + 1e-9
    if rng.random() < 0.3:  # a second, slower cycle
        base += rng.uniform(0.2, 1.0) * np.sin(2 * np.pi * t / (period * rng.uniform(3, 8)))
    if rng.random() < 0.3:
        base += np.linspace(0, rng.normal(0, 1.5), length)
    if rng.random() < 0.2:
        at = rng.integers(length // 4, length)
        base[at:] += rng.normal(0, 2)
    noise = rng.uniform(0.0, 0.5) * rng.normal(0, 1, length)
    return rng.normal(0, 100) + rng.lognormal(0, 2) * (base + noise)


def normalise_online(series: np.ndarray, half_life: float = DetectorConfig.level_half_life) -> np.ndarray:
    """The detector's own normalisation, one sample at a time (value before learning it)."""
    stats = ExpStats(half_life)
    lo, hi = np.inf, -np.inf
    out = np.zeros(len(series), dtype=np.float32)
    for i, x in enumerate(series.tolist()):
        spread = max(stats.spread, 1e-3 * (hi - lo if hi >= lo else 0.0), 1e-9)
        out[i] = 0.0 if stats.n == 0 else max(min((x - stats.level) / spread, 10.0), -10.0)
        stats.learn_one(x)
        lo, hi = min(lo, x), max(hi, x)
    return out


def windows(z: np.ndarray, skip: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, next value) pairs from one normalised series, after a short warm-up."""
    idx = np.arange(skip + WINDOW, len(z))
    x = np.stack([z[i - WINDOW : i] for i in idx])
    return x.astype(np.float32), z[idx].astype(np.float32)[:, None]


class AnomalyForecasterRecipe:
    """Recipe of ``anomaly_forecaster``: a small MLP forecaster over normalised windows."""

    name = MODEL_NAME
    version = "1.0.0"
    package_dir = "plugins/anomaly_detection/models"
    epochs = 8
    batch_size = 256

    def __init__(self, n_series: int = 600, length: int = 700) -> None:
        self.n_series = n_series
        self.length = length

    def dataset(self, seed: int) -> Dataset:
        rng = np.random.default_rng(seed)
        xs, ys = [], []
        for _ in range(self.n_series):
            x, y = windows(normalise_online(synthetic_series(rng, self.length)))
            keep = rng.choice(len(x), size=min(len(x), 200), replace=False)
            xs.append(x[keep])
            ys.append(y[keep])
        x_all, y_all = np.concatenate(xs), np.concatenate(ys)
        order = rng.permutation(len(x_all))
        x_all, y_all = x_all[order], y_all[order]
        n = len(x_all)
        a, b = int(0.8 * n), int(0.9 * n)
        return Dataset(x_all[:a], y_all[:a], x_all[a:b], y_all[a:b], x_all[b:], y_all[b:], x_all[:500])

    def build(self, role: str) -> keras.Model:
        import keras

        width = 64 if role == "teacher" else 32
        return keras.Sequential(
            [
                keras.layers.Input(shape=(WINDOW,)),
                keras.layers.Dense(width, activation="relu"),
                keras.layers.Dense(width // 2, activation="relu"),
                keras.layers.Dense(1),
            ]
        )

    def compile_args(self) -> dict[str, Any]:
        return {"optimizer": "adam", "loss": "huber", "metrics": ["mae"]}

    def evaluate(self, predict: Callable[[np.ndarray], np.ndarray], ds: Dataset) -> dict[str, float]:
        pred = np.asarray(predict(ds.x_test)).reshape(-1)
        y = ds.y_test.reshape(-1)
        naive = ds.x_test[:, -1]
        mae = float(np.mean(np.abs(pred - y)))
        return {"mae_vs_last_value": mae / float(np.mean(np.abs(naive - y))), "mae": mae}
