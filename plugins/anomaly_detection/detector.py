"""Online anomaly detection for one numeric series, built from small stateful parts.

Every part reads like a River estimator: ``learn_one`` updates state, ``score_one`` looks without
changing anything. :class:`SeriesDetector` combines them, one sample at a time, in time order, with no
look-ahead:

* :class:`ExpStats` learns the level and spread of the series (exponentially weighted mean and mean
  absolute deviation); :class:`RangeTracker` the range it has ever taken;
* :class:`SeasonalProfile` learns the value expected at this time of day (time based, so irregular
  sampling and gaps fall in the right bin);
* each "surprise" signal (deviation from the level, the recent mean of that deviation over three time
  scales, a value outside the known range, a deviation from the daily profile and, optionally, the
  forecast error of a shared model) is turned into a comparable number by a :class:`RecordCalibrator`:
  the ratio of the signal to the largest value it has taken so far (slowly forgotten). A ratio above 1 means "more surprising than anything seen
  before", the same meaning for every series, which is what lets one threshold serve them all;
* the score in [0, 1) is ``r / (1 + r)`` of the largest ratio: 0.5 marks a new record. After a record,
  :class:`Refractory` damps the score until the excursion is over, so that one incident raises one alarm.

Memory per series is bounded (a few hundred floats, mostly the daily profile).
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)

DAY_S = 86400.0


def _alpha(half_life: float) -> float:
    """Weight of a new sample for an exponential average with the given half-life (in samples)."""
    return 1.0 - float(0.5 ** (1.0 / half_life))


@dataclass
class ExpStats:
    """Exponentially weighted level and spread (mean absolute deviation) of a series."""

    half_life: float = 200.0
    level: float = 0.0
    spread: float = 0.0
    n: int = 0

    def learn_one(self, x: float) -> None:
        self.n += 1
        a = max(_alpha(self.half_life), 1.0 / self.n)
        if self.n == 1:
            self.level = x
            return
        self.spread += a * (abs(x - self.level) - self.spread)
        self.level += a * (x - self.level)

    def to_state(self) -> dict[str, Any]:
        return {"level": self.level, "spread": self.spread, "n": self.n}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.level, self.spread, self.n = float(state["level"]), float(state["spread"]), int(state["n"])


@dataclass
class RangeTracker:
    """The smallest and largest value seen; ``score_one`` is how far outside that range ``x`` lies."""

    low: float = math.inf
    high: float = -math.inf

    @property
    def width(self) -> float:
        return self.high - self.low if self.high >= self.low else 0.0

    def score_one(self, x: float) -> float:
        if self.high < self.low:
            return 0.0
        return max(x - self.high, self.low - x, 0.0) / max(self.width, 1e-12)

    def learn_one(self, x: float) -> None:
        self.low = min(self.low, x)
        self.high = max(self.high, x)

    def to_state(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.low, self.high = float(state["low"]), float(state["high"])


@dataclass
class SeasonalProfile:
    """The value expected at each phase of a period (a day by default), learned per bin.

    Bins are chosen from time, not from sample counts, so irregular sampling and gaps are harmless. A
    bin not seen yet has no expectation (``expected`` returns ``None``).
    """

    period_s: float = DAY_S
    bins: int = 288
    half_life: float = 3.0  # in visits of the same bin, i.e. days for a daily profile
    values: array[float] = field(default_factory=lambda: array("d"))

    def __post_init__(self) -> None:
        if len(self.values) != self.bins:
            self.values = array("d", [math.nan]) * self.bins

    def _bin(self, ts: float) -> int:
        return int((ts % self.period_s) / self.period_s * self.bins) % self.bins

    def expected(self, ts: float) -> float | None:
        v = self.values[self._bin(ts)]
        return None if math.isnan(v) else v

    def learn_one(self, ts: float, x: float) -> None:
        b = self._bin(ts)
        v = self.values[b]
        self.values[b] = x if math.isnan(v) else v + _alpha(self.half_life) * (x - v)

    def to_state(self) -> dict[str, Any]:
        return {"values": [None if math.isnan(v) else v for v in self.values]}

    def load_state(self, state: Mapping[str, Any]) -> None:
        vals = state["values"]
        if len(vals) == self.bins:
            self.values = array("d", [math.nan if v is None else float(v) for v in vals])


@dataclass
class RecordCalibrator:
    """Turns a non-negative surprise signal into the ratio to its (slowly forgotten) largest past value."""

    half_life: float = 20000.0
    record: float | None = None

    def score_one(self, r: float) -> float:
        if self.record is None:
            return 0.0
        return r / max(self.record, 1e-12)

    def learn_one(self, r: float) -> None:
        if self.record is None:
            self.record = r
        else:
            self.record = max(r, self.record * (1.0 - _alpha(self.half_life)))

    def to_state(self) -> dict[str, Any]:
        return {"record": self.record}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.record = None if state.get("record") is None else float(state["record"])


@dataclass
class Refractory:
    """After an alarm-level ratio (above 1), damps scores: one incident, one alarm.

    The damping lasts at least ``length`` samples and until the ratio has fallen below ``rearm``, so a
    slow excursion that keeps setting marginal records does not raise an alarm every ``length`` samples.
    """

    length: int = 50
    damping: float = 0.1
    rearm: float = 0.9
    remaining: int = 0
    holding: bool = False

    def filter_one(self, ratio: float) -> float:
        if self.holding:
            if self.remaining > 0:
                self.remaining -= 1
            if self.remaining > 0 or ratio >= self.rearm:
                return ratio * self.damping
            self.holding = False
        if ratio > 1.0 and self.length > 0:
            self.remaining, self.holding = self.length, True
        return ratio


class Forecaster(Protocol):
    """A model that predicts the next normalised value from a window of normalised values."""

    window: int

    def predict(self, window: list[float]) -> float: ...


@dataclass(frozen=True)
class DetectorConfig:
    """Parameters of :class:`SeriesDetector`; the defaults are the ones documented and evaluated."""

    learning_samples: int = 300
    burn_in: int = 30
    level_half_life: float = 500.0
    drift_half_lives: tuple[float, ...] = (3.0, 30.0, 300.0)
    record_half_life: float = 20000.0
    refractory: int = 50
    refractory_damping: float = 0.1
    refractory_rearm: float = 0.9
    hold_at_start: bool = True
    day_bins_max: int = 288
    profile_half_life: float = 3.0
    gap_factor: float = 10.0
    weekly_bins: int = 0  # 0: no weekly profile
    use_model: bool = True


@dataclass(frozen=True, slots=True)
class DetectorOutput:
    """The outcome of one sample: score in [0, 1), which signal drove it, and the expected range."""

    score: float
    signal: str
    expected_low: float
    expected_high: float
    learning: bool


class SeriesDetector:
    """Online anomaly detector of one series: ``update(ts, x)`` scores the sample, then learns it."""

    def __init__(self, config: DetectorConfig | None = None, forecaster: Forecaster | None = None) -> None:
        self.config = cfg = config or DetectorConfig()
        self.forecaster = forecaster if cfg.use_model else None
        self.stats = ExpStats(cfg.level_half_life)
        self.range = RangeTracker()
        self.daily: SeasonalProfile | None = None
        self.weekly = SeasonalProfile(7 * DAY_S, cfg.weekly_bins, 2.0) if cfg.weekly_bins else None
        self.calibrators: dict[str, RecordCalibrator] = {}
        self.refractory = Refractory(cfg.refractory, cfg.refractory_damping, cfg.refractory_rearm)
        self.drift = [0.0] * len(cfg.drift_half_lives)
        self.n = 0
        self.last_ts: float | None = None
        self.typical_dt: float | None = None
        self.recent: list[float] = []  # last normalised values, for the forecaster

    # --- helpers -------------------------------------------------------------------------------------

    def _calibrator(self, signal: str) -> RecordCalibrator:
        cal = self.calibrators.get(signal)
        if cal is None:
            cal = self.calibrators[signal] = RecordCalibrator(self.config.record_half_life)
        return cal

    def _spread(self) -> float:
        return max(self.stats.spread, 1e-3 * self.range.width, 1e-9)

    def _ensure_profile(self, dt: float) -> None:
        # The bin width follows the sampling interval seen at first, bounded to keep memory small.
        bins = int(min(max(DAY_S / max(dt, 1.0), 24), self.config.day_bins_max))
        self.daily = SeasonalProfile(DAY_S, bins, self.config.profile_half_life)

    def _signals(self, ts: float, x: float) -> dict[str, float]:
        spread = self._spread()
        residual = (x - self.stats.level) / spread if self.stats.n else 0.0
        clipped = max(min(residual, 10.0), -10.0)
        out = {"level": abs(residual), "range": self.range.score_one(x)}
        for k, (hl, d) in enumerate(zip(self.config.drift_half_lives, self.drift)):
            out[f"drift{k}"] = abs(d + _alpha(hl) * (clipped - d))
        expected = self.daily.expected(ts) if self.daily is not None else None
        out["daily"] = 0.0 if expected is None else abs(x - expected) / spread
        if self.weekly is not None:
            expected = self.weekly.expected(ts)
            out["weekly"] = 0.0 if expected is None else abs(x - expected) / spread
        if self.forecaster is not None and len(self.recent) >= self.forecaster.window:
            predicted = self.forecaster.predict(self.recent[-self.forecaster.window :])
            out["model"] = abs(clipped - predicted)
        return out

    # --- the River-style interface ---------------------------------------------------------------------

    def score_one(self, ts: float, x: float) -> float:
        """The score of ``x`` at ``ts`` without learning it (no refractory effect)."""
        if self.n < self.config.learning_samples:
            return 0.0
        ratio = max(self._calibrator(k).score_one(r) for k, r in self._signals(ts, x).items())
        return ratio / (1.0 + ratio)

    def learn_one(self, ts: float, x: float) -> None:
        """Learn ``x`` at ``ts`` without scoring it."""
        self._learn(ts, x, self._signals(ts, x))

    def update(self, ts: float, x: float) -> DetectorOutput:
        """Score the sample, then learn it: the path used online and by the NAB evaluation."""
        if not math.isfinite(x):
            return DetectorOutput(0.0, "", *self.expected_range(), self.n < self.config.learning_samples)
        signals = self._signals(ts, x)
        learning = self.n < self.config.learning_samples
        best, best_ratio = "", 0.0
        if self.n == self.config.learning_samples and self.config.hold_at_start:
            self.refractory.holding = True
        if not learning:
            for name, r in signals.items():
                ratio = self._calibrator(name).score_one(r)
                if ratio > best_ratio:
                    best, best_ratio = name, ratio
            best_ratio = self.refractory.filter_one(best_ratio)
        low, high = self.expected_range()
        self._learn(ts, x, signals)
        return DetectorOutput(best_ratio / (1.0 + best_ratio), best, low, high, learning)

    def expected_range(self) -> tuple[float, float]:
        """Where the next value is expected (level +/- 4 spreads)."""
        half = 4.0 * self._spread() if self.stats.n > 1 else math.inf
        return self.stats.level - half, self.stats.level + half

    def _learn(self, ts: float, x: float, signals: Mapping[str, float]) -> None:
        if self.last_ts is not None:
            dt = ts - self.last_ts
            if dt > 0:
                if self.typical_dt is None:
                    self.typical_dt = dt
                if dt > self.config.gap_factor * self.typical_dt:
                    # After a gap the recent past says nothing about now: restart the short memories.
                    self.drift = [0.0] * len(self.drift)
                    self.recent.clear()
                    signals = {k: v for k, v in signals.items() if not k.startswith(("drift", "model"))}
                else:
                    self.typical_dt += 0.01 * (dt - self.typical_dt)
                if self.daily is None:
                    self._ensure_profile(dt)
        self.last_ts = ts
        self.n += 1
        if self.n > self.config.burn_in:
            for name, r in signals.items():
                self._calibrator(name).learn_one(r)
        if self.stats.n:
            clipped = max(min((x - self.stats.level) / self._spread(), 10.0), -10.0)
            for k, hl in enumerate(self.config.drift_half_lives):
                self.drift[k] += _alpha(hl) * (clipped - self.drift[k])
        if self.forecaster is not None:
            spread = self._spread()
            z = (x - self.stats.level) / spread if self.stats.n else 0.0
            self.recent.append(max(min(z, 10.0), -10.0))
            if len(self.recent) > self.forecaster.window:
                del self.recent[0]
        self.stats.learn_one(x)
        self.range.learn_one(x)
        if self.daily is not None:
            self.daily.learn_one(ts, x)
        if self.weekly is not None:
            self.weekly.learn_one(ts, x)

    # --- persistence --------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot of what the detector has learned."""
        return {
            "v": 1,
            "n": self.n,
            "last_ts": self.last_ts,
            "typical_dt": self.typical_dt,
            "drift": list(self.drift),
            "recent": list(self.recent),
            "stats": self.stats.to_state(),
            "range": self.range.to_state() if self.range.high >= self.range.low else None,
            "daily": None if self.daily is None else {"bins": self.daily.bins, **self.daily.to_state()},
            "weekly": None if self.weekly is None else self.weekly.to_state(),
            "calibrators": {k: c.to_state() for k, c in self.calibrators.items()},
            "refractory": [self.refractory.remaining, self.refractory.holding],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore a snapshot written by :meth:`to_state`."""
        if state.get("v") != 1:
            raise ValueError(f"unknown detector state version {state.get('v')!r}")
        self.n = int(state["n"])
        self.last_ts = state["last_ts"]
        self.typical_dt = state["typical_dt"]
        drift = [float(v) for v in state["drift"]]
        if len(drift) == len(self.drift):
            self.drift = drift
        self.recent = [float(v) for v in state["recent"]]
        self.stats.load_state(state["stats"])
        if state["range"] is not None:
            self.range.load_state(state["range"])
        if state["daily"] is not None:
            self.daily = SeasonalProfile(DAY_S, int(state["daily"]["bins"]), self.config.profile_half_life)
            self.daily.load_state(state["daily"])
        if self.weekly is not None and state.get("weekly") is not None:
            self.weekly.load_state(state["weekly"])
        for k, c in state["calibrators"].items():
            self._calibrator(k).load_state(c)
        self.refractory.remaining, self.refractory.holding = int(state["refractory"][0]), bool(state["refractory"][1])


DetectorFactory = Callable[[], SeriesDetector]
