"""The learning period: per-machine statistics of normal operation, and scores against them.

During the learning period a :class:`FeatureBaseline` collects the feature vectors of a machine's
windows (every channel x feature, flattened). ``fit`` then estimates, per feature:

* a **centre** (median over the learning period);
* a **drift-aware scale**. Process variables (temperatures, pressures) wander slowly, so their spread
  within a short learning period under-states how far they move later in normal operation. The
  scale is read off the feature's variogram: the median absolute difference between values ``lag``
  windows apart, for lags from 1/40 to 1/2.5 of the learning period, fitted as a power law
  ``D(lag) ~ lag**b`` (``b`` clipped to ``[0, 1]``: white noise 0, random walk 0.5, steady drift 1)
  and extrapolated to ``drift_horizon_s``, the time the baseline is expected to hold. A noise-like
  feature keeps its short-term scale; a wandering one gets a proportionally wider band;
* a **threshold normaliser**: the ``quantile`` of ``|z|`` over the learning period, floored at
  ``floor`` so that a feature that was unusually quiet while learning cannot trigger on noise.

``score_one`` returns the per-feature exceedance ``|z| / normaliser``; a window's anomaly score is
its maximum. :class:`ShiftAccumulator` optionally adds a two-sided CUSUM over the signed exceedances,
which catches small but persistent shifts (a slowly closing valve) that never cross the alarm score
in a single window. Everything ``fit`` produces is plain JSON (``to_state``/``from_state``), so the fitted
baseline survives a restart through the plugin's state store.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

_MAD_TO_SIGMA_OF_DIFF = 1.0 / (0.6745 * math.sqrt(2.0))
"""Median |a - b| of two independent N(0, s²) draws is 0.6745*sqrt(2)*s."""


@dataclass(frozen=True, slots=True)
class BaselineSettings:
    """How the learning period turns normal data into scales and thresholds."""

    drift_horizon_s: float = 2400.0
    quantile: float = 0.99
    floor: float = 2.0
    lag_fractions: tuple[float, ...] = (1 / 40, 1 / 20, 1 / 10, 1 / 5, 1 / 2.5)


@dataclass
class FeatureBaseline:
    """Collects normal feature vectors, then scores new ones against them (``learn_one``/``score_one``)."""

    names: Sequence[str]
    settings: BaselineSettings = field(default_factory=BaselineSettings)
    center: FloatArray | None = None
    scale: FloatArray | None = None
    normaliser: FloatArray | None = None
    drift_exponent: FloatArray | None = None
    _rows: list[FloatArray] = field(default_factory=list, repr=False)
    _times: list[float] = field(default_factory=list, repr=False)

    @property
    def fitted(self) -> bool:
        return self.center is not None

    @property
    def n_learned(self) -> int:
        return len(self._rows)

    def learn_one(self, features: FloatArray, ts: float) -> None:
        """Add one normal feature vector (flattened) observed at ``ts``."""
        self._rows.append(np.asarray(features, dtype=np.float64).ravel().copy())
        self._times.append(ts)

    def pending(self) -> tuple[list[list[float]], list[float]]:
        """The vectors collected so far in the learning period (for persistence), with their times."""
        return [r.tolist() for r in self._rows], list(self._times)

    def fit(self) -> None:
        """Fit centre, drift-aware scale and threshold normaliser from the collected vectors."""
        if len(self._rows) < 10:
            raise ValueError(f"need at least 10 windows to fit a baseline, have {len(self._rows)}")
        data = np.vstack(self._rows)
        n = data.shape[0]
        times = np.asarray(self._times)
        step_s = float(np.median(np.diff(times))) if n > 1 else 1.0
        step_s = step_s if step_s > 0 else 1.0
        center = np.median(data, axis=0)
        lags = sorted({max(1, int(round(f * n))) for f in self.settings.lag_fractions if int(f * n) < n})
        lags = [lag for lag in lags if lag < n] or [1]
        diffs = np.array([np.median(np.abs(data[lag:] - data[:-lag]), axis=0) for lag in lags])
        diffs = np.maximum(diffs, 1e-12)
        if len(lags) >= 2:
            log_lag = np.log(np.asarray(lags, dtype=np.float64))
            design = np.vstack([log_lag, np.ones_like(log_lag)]).T
            coef, *_ = np.linalg.lstsq(design, np.log(diffs), rcond=None)
            exponent = np.clip(coef[0], 0.0, 1.0)
        else:
            exponent = np.zeros(data.shape[1])
        horizon = max(self.settings.drift_horizon_s / step_s, float(lags[-1]))
        at_horizon = diffs[-1] * (horizon / lags[-1]) ** exponent
        scale = np.maximum(at_horizon, diffs.max(axis=0)) * _MAD_TO_SIGMA_OF_DIFF
        # A feature that never moved in the learning period (a stuck or quantised channel) still
        # needs a finite scale: use a small fraction of its magnitude.
        tiny = 1e-6 * np.maximum(np.abs(center), 1.0)
        scale = np.maximum(scale, tiny)
        z = np.abs(data - center) / scale
        normaliser = np.maximum(np.quantile(z, self.settings.quantile, axis=0), self.settings.floor)
        self.center, self.scale, self.normaliser, self.drift_exponent = center, scale, normaliser, exponent
        self._rows.clear()
        self._times.clear()
        logger.debug("baseline fitted on %d windows (step %.3g s)", n, step_s)

    def zscores(self, features: FloatArray) -> FloatArray:
        """Signed deviations from the centre in drift-aware scale units."""
        if self.center is None or self.scale is None:
            raise RuntimeError("baseline not fitted")
        return (np.asarray(features, dtype=np.float64).ravel() - self.center) / self.scale

    def signed_exceedance(self, features: FloatArray) -> FloatArray:
        """Per-feature ``z / normaliser`` (signed)."""
        if self.normaliser is None:
            raise RuntimeError("baseline not fitted")
        return self.zscores(features) / self.normaliser

    def score_one(self, features: FloatArray) -> FloatArray:
        """Per-feature exceedance ``|z| / normaliser`` (1.0 = the edge of normal learning-period values)."""
        if self.normaliser is None:
            raise RuntimeError("baseline not fitted")
        return np.abs(self.zscores(features)) / self.normaliser

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable fitted state."""
        if self.center is None or self.scale is None or self.normaliser is None:
            raise RuntimeError("baseline not fitted")
        return {
            "names": list(self.names),
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "normaliser": self.normaliser.tolist(),
            "drift_exponent": [] if self.drift_exponent is None else self.drift_exponent.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], settings: BaselineSettings | None = None) -> FeatureBaseline:
        """Rebuild a fitted baseline saved by :meth:`to_state`."""
        b = cls(names=list(state["names"]), settings=settings or BaselineSettings())
        b.center = np.asarray(state["center"], dtype=np.float64)
        b.scale = np.asarray(state["scale"], dtype=np.float64)
        b.normaliser = np.asarray(state["normaliser"], dtype=np.float64)
        b.drift_exponent = np.asarray(state.get("drift_exponent", []), dtype=np.float64)
        return b


@dataclass
class ShiftAccumulator:
    """Two-sided CUSUM per feature over signed exceedances (Page's test, bounded).

    ``S+ = clip(S+ + e - k, 0, cap * h)`` and ``S- = clip(S- - e - k, 0, cap * h)``; the returned
    score is ``max(S+, S-) / h`` per feature, so 1.0 means "a persistent shift of more than ``k``
    for long enough". The cap bounds how long a cleared fault keeps the score up.
    """

    k: float = 1.5
    h: float = 20.0
    cap: float = 1.2
    _up: FloatArray | None = field(default=None, repr=False)
    _down: FloatArray | None = field(default=None, repr=False)

    def update(self, exceedance: FloatArray) -> FloatArray:
        e = np.asarray(exceedance, dtype=np.float64)
        if self._up is None or self._down is None or self._up.shape != e.shape:
            self._up = np.zeros_like(e)
            self._down = np.zeros_like(e)
        limit = self.cap * self.h
        up, down = self._up, self._down
        # In place with maximum/minimum: np.clip costs several times more on vectors this small.
        up += e
        up -= self.k
        np.minimum(np.maximum(up, 0.0, out=up), limit, out=up)
        down -= e
        down -= self.k
        np.minimum(np.maximum(down, 0.0, out=down), limit, out=down)
        out = np.maximum(up, down)
        out *= 1.0 / self.h
        return out

    def reset(self) -> None:
        self._up = self._down = None
