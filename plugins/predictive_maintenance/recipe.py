"""Model recipe of the one-step forecaster the predictive-maintenance plugin ships.

Training data comes only from the project's own simulator (:mod:`.simulator`): stretches of
``INPUT_LENGTH + 1`` samples of every channel of many randomised pump rigs in normal operation, plus
generic process-signal shapes (AR(1) noise of varying colour, sine + noise, random walks, quantised
readings). Each input is made scale-free exactly as the plugin does at run time
(:func:`.scoring.forecast_inputs`: minus the newest sample, over the window's standard deviation), so
one network serves any machine, channel and unit. The target is the next sample in the same units.

The network is a small dense regressor; the toolchain turns it into float32/float16/dynamic/int8
``.tflite`` files. The headline metric is the forecasting skill against the better of two naive
forecasts (last value, window mean): ``1 - MSE_model / MSE_naive`` on held-out simulated data.

    edge-gateway models build --recipe pdm_forecaster
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.toolchain.recipe import Dataset
from plugins.predictive_maintenance.scoring import forecast_inputs
from plugins.predictive_maintenance.simulator import PumpRig

if TYPE_CHECKING:  # pragma: no cover
    import keras

INPUT_LENGTH = 32


def _sliding(series: np.ndarray, length: int, hop: int) -> np.ndarray:
    starts = range(0, series.shape[-1] - length + 1, hop)
    return np.stack([series[..., s : s + length] for s in starts], axis=-2)


def simulated_windows(rng: np.random.Generator, rigs: int, steps: int, hop: int = 4) -> np.ndarray:
    """Normal-operation stretches ``(n, INPUT_LENGTH + 1)`` from randomised rigs, every channel."""
    out = []
    for _ in range(rigs):
        rig = PumpRig.random(rng)
        series = rig.run(steps).T  # (channels, steps)
        out.append(_sliding(series, INPUT_LENGTH + 1, hop).reshape(-1, INPUT_LENGTH + 1))
    return np.concatenate(out)


def generic_windows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Generic normal process-signal shapes ``(n, INPUT_LENGTH + 1)``."""
    length = INPUT_LENGTH + 1
    t = np.arange(length, dtype=np.float64)
    out = np.empty((n, length))
    for i in range(n):
        kind = rng.integers(4)
        noise = rng.normal(size=length)
        if kind == 0:  # AR(1) noise, white to strongly coloured
            phi = rng.uniform(0.0, 0.98)
            x = np.empty(length)
            x[0] = noise[0]
            for k in range(1, length):
                x[k] = phi * x[k - 1] + noise[k]
        elif kind == 1:  # periodic load + noise
            period = rng.uniform(4.0, 64.0)
            x = rng.uniform(0.0, 3.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)) + noise
        elif kind == 2:  # slow drift / random walk + noise
            x = np.cumsum(rng.normal(0.0, rng.uniform(0.05, 0.5), length)) + noise
        else:  # coarse sensor resolution
            x = np.round(noise * rng.uniform(0.3, 2.0))
        out[i] = x
    return out


class ForecasterRecipe:
    """Dense one-step-ahead forecaster over scale-free single-channel windows of 32 samples."""

    name = "pdm_forecaster"
    version = "1.0.0"
    package_dir = "plugins/predictive_maintenance/models"
    epochs = 30
    batch_size = 256

    def dataset(self, seed: int) -> Dataset:
        rng = np.random.default_rng(seed)
        sim = simulated_windows(rng, rigs=40, steps=800)
        gen = generic_windows(rng, sim.shape[0] // 2)
        raw = np.concatenate([sim, gen])
        raw = raw[rng.permutation(raw.shape[0])]
        x, y = forecast_inputs(raw[:, :-1], raw[:, -1])
        assert y is not None
        n = x.shape[0]
        n_val = n_test = n // 10
        keep = slice(n_val + n_test, None)
        return Dataset(
            x_train=x[keep],
            y_train=y[keep],
            x_val=x[:n_val],
            y_val=y[:n_val],
            x_test=x[n_val : n_val + n_test],
            y_test=y[n_val : n_val + n_test],
            representative=x[keep][:500],
        )

    def build(self, role: str) -> keras.Model:
        import keras

        width = 64 if role == "teacher" else 32
        inputs = keras.Input(shape=(INPUT_LENGTH,), name="window")
        h = keras.layers.Dense(width, activation="relu")(inputs)
        h = keras.layers.Dense(width // 2, activation="relu")(h)
        outputs = keras.layers.Dense(1, name="next")(h)
        return keras.Model(inputs, outputs, name=f"{self.name}_{role}")

    def compile_args(self) -> dict[str, Any]:
        import keras

        return {"optimizer": keras.optimizers.Adam(2e-3), "loss": "huber"}

    def evaluate(self, predict: Callable[[np.ndarray], np.ndarray], ds: Dataset) -> dict[str, float]:
        pred = np.asarray(predict(ds.x_test), dtype=np.float64).reshape(-1)
        y = ds.y_test.reshape(-1).astype(np.float64)
        mse = float(np.mean(np.square(pred - y)))
        # Naive forecasts in the same scale-free units: last value (0) and window mean.
        last = float(np.mean(np.square(y)))
        window_mean = float(np.mean(np.square(ds.x_test.mean(axis=1) - y)))
        naive = min(last, window_mean)
        return {"skill": 1.0 - mse / naive, "mse": mse, "mse_last_value": last, "mse_window_mean": window_mean}
