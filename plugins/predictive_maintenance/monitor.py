"""Health monitoring of one machine: readings in, health, alarms and remaining life out.

:class:`MachineMonitor` chains the small stateful pieces of this package, one instance per machine:

``MachineWindow`` (windows by samples or time) -> ``FeatureSet`` (condition-monitoring features per
channel) [+ ``InnovationScorer``: the int8 forecaster's surprise per channel] -> ``FeatureBaseline``
(learning period, then exceedance per feature) -> ``FirstOutScope`` (which features may raise or hold
the alarm) -> health index -> ``AlarmTracker`` (hysteresis, minimum duration) and ``DegradationTrend``
(slope and remaining useful life).

Its fitted state (:meth:`to_state`) is plain JSON, saved by the plugin in the pipeline's state store
so a restart resumes where it stopped, learning period included.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from plugins.predictive_maintenance.baseline import BaselineSettings, FeatureBaseline, ShiftAccumulator
from plugins.predictive_maintenance.features import FeatureSet
from plugins.predictive_maintenance.health import (
    AlarmTracker,
    AlarmTransition,
    DegradationTrend,
    FirstOutScope,
    RemainingLife,
    health_from_score,
)
from plugins.predictive_maintenance.scoring import InnovationScorer
from plugins.predictive_maintenance.windowing import MachineWindow, Window, WindowSpec

logger = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """Everything that shapes one machine's monitoring (built from the plugin options)."""

    window: WindowSpec = field(default_factory=lambda: WindowSpec(size=5, hop=1))
    features: FeatureSet = field(default_factory=FeatureSet)
    baseline: BaselineSettings = field(default_factory=BaselineSettings)
    learning_windows: int = 400
    alarm_score: float = 2.25
    alarm_below: float = 50.0
    clear_above: float = 50.0
    min_duration_s: float = 0.0
    trend_span_s: float = 3600.0
    top_contributors: int = 3
    shift_k: float | None = None
    shift_h: float = 20.0
    first_out: bool = True
    rearm_exceedance: float = 1.0
    first_out_window_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Contributor:
    """One channel feature and how far outside its normal band it is (1.0 = edge of normal)."""

    channel: str
    feature: str
    exceedance: float
    zscore: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "feature": self.feature,
            "exceedance": round(self.exceedance, 3),
            "z": round(self.zscore, 3),
        }


@dataclass(frozen=True, slots=True)
class WindowResult:
    """What one window told about the machine.

    While learning, ``health`` is ``None`` and ``learning_progress`` < 1. Contributors and the
    remaining-life estimate are computed on demand (:meth:`MachineMonitor.contributors`,
    :meth:`MachineMonitor.remaining_life`), only when an output needs them.
    """

    machine: str
    ts: float
    learning_progress: float
    health: float | None = None
    score: float | None = None
    transition: AlarmTransition | None = None
    alarm_active: bool = False


class MachineMonitor:
    """Learns one machine's normal behaviour, then scores every window against it."""

    def __init__(
        self,
        machine: str,
        channels: Sequence[str],
        settings: MonitorSettings,
        scorer: InnovationScorer | None = None,
    ) -> None:
        self.machine = machine
        self.channels = tuple(channels)
        self.settings = settings
        self.scorer = scorer
        history = scorer.context_length if scorer is not None else 0
        self.window = MachineWindow(machine, self.channels, settings.window, history=history)
        names = list(settings.features.names()) + (["innovation"] if scorer is not None else [])
        self.feature_names = names
        self.flat_names = [f"{c}.{f}" for c in self.channels for f in names]
        self.baseline = FeatureBaseline(self.flat_names, settings.baseline)
        self.alarm = AlarmTracker(settings.alarm_below, settings.clear_above, settings.min_duration_s)
        self.shift = ShiftAccumulator(settings.shift_k, settings.shift_h) if settings.shift_k is not None else None
        self.trend = DegradationTrend(settings.trend_span_s, settings.alarm_below)
        self.scope = (
            FirstOutScope(settings.rearm_exceedance, settings.first_out_window_s) if settings.first_out else None
        )
        self.last: WindowResult | None = None
        self.windows_seen = 0
        self._last_feats: NDArray[np.float64] | None = None
        self._last_exceed: NDArray[np.float64] | None = None

    # ------------------------------------------------------------------ streaming API

    @property
    def learning(self) -> bool:
        return not self.baseline.fitted

    def push(self, ts: float, values: Mapping[str, float]) -> list[WindowResult]:
        """Feed one reading; return a result for every window it completed."""
        return [self._on_window(w) for w in self.window.push(ts, values)]

    def features_of(self, window: Window) -> NDArray[np.float64]:
        """Feature matrix ``(channels, features)`` of a window (model column last when in use)."""
        feats = self.settings.features.compute(window.samples, window.sample_rate_hz)
        if self.scorer is not None:
            context = self.window.tail(self.scorer.context_length)
            feats = np.concatenate([feats, self.scorer.score(context)[:, None]], axis=1)
        return feats

    def finish_learning(self) -> None:
        """End the learning period now (fit on what was collected)."""
        if not self.baseline.fitted:
            self.baseline.fit()
            logger.info("machine %s: learning period complete", self.machine)

    def _on_window(self, window: Window) -> WindowResult:
        self.windows_seen += 1
        feats = self.features_of(window)
        ts = window.end_ts
        if not self.baseline.fitted:
            self.baseline.learn_one(feats, ts)
            progress = self.baseline.n_learned / self.settings.learning_windows
            if self.baseline.n_learned >= self.settings.learning_windows:
                self.finish_learning()
                progress = 1.0
            result = WindowResult(self.machine, ts, min(progress, 1.0))
            self.last = result
            return result
        signed = self.baseline.signed_exceedance(feats)
        exceed = np.abs(signed)
        if self.shift is not None:
            # A persistent shift scores like a window at the alarm score once its CUSUM reaches h.
            exceed = np.maximum(exceed, self.settings.alarm_score * self.shift.update(signed))
        self._last_feats = feats
        self._last_exceed = exceed
        if self.scope is not None:
            score = self.scope.score(exceed, self.alarm.active, self.settings.alarm_score, ts)
        else:
            score = float(exceed.max()) if exceed.size else 0.0
        health = health_from_score(score, self.settings.alarm_score)
        transition = self.alarm.update(ts, health)
        if transition is not None and self.scope is not None:
            self.scope.on_transition(exceed, transition.raised, self.settings.alarm_score, ts)
        self.trend.update(ts, health)
        result = WindowResult(
            machine=self.machine,
            ts=ts,
            learning_progress=1.0,
            health=health,
            score=score,
            transition=transition,
            alarm_active=self.alarm.active,
        )
        self.last = result
        return result

    def remaining_life(self) -> RemainingLife:
        """Degradation slope and time until health crosses the alarm level, with its band."""
        return self.trend.estimate()

    def suppressed(self) -> list[str]:
        """Channel features suppressed as consequences of a past alarm (``channel.feature``)."""
        if self.scope is None:
            return []
        return [self.flat_names[i] for i in self.scope.suppressed_indices()]

    def contributors(self) -> tuple[Contributor, ...]:
        """The channel features furthest outside their normal band in the last scored window."""
        exceed = self._last_exceed
        if exceed is None or self._last_feats is None:
            return ()
        z = self.baseline.zscores(self._last_feats)
        k = min(self.settings.top_contributors, exceed.size)
        if k == 0:
            return ()
        top = np.argpartition(-exceed, k - 1)[:k]
        top = top[np.argsort(-exceed[top])]
        n_feat = len(self.feature_names)
        return tuple(
            Contributor(self.channels[i // n_feat], self.feature_names[i % n_feat], float(exceed[i]), float(z[i]))
            for i in top
        )

    # ------------------------------------------------------------------ persistence

    def to_state(self) -> dict[str, Any]:
        """JSON state: fitted baseline or learning progress, and the alarm state."""
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "channels": list(self.channels),
            "features": self.flat_names,
            "alarm": self.alarm.to_state(),
        }
        if self.scope is not None:
            state["scope"] = self.scope.to_state()
        if self.baseline.fitted:
            state["baseline"] = self.baseline.to_state()
        else:
            rows, times = self.baseline.pending()
            state["learning"] = {"rows": rows, "times": times}
        return state

    def restore(self, state: Mapping[str, Any]) -> bool:
        """Resume from :meth:`to_state` output; False (and nothing changed) if it does not match."""
        if state.get("version") != STATE_VERSION or list(state.get("features", [])) != self.flat_names:
            logger.warning("machine %s: saved state does not match the configuration; learning again", self.machine)
            return False
        if "baseline" in state:
            self.baseline = FeatureBaseline.from_state(dict(state["baseline"]), self.settings.baseline)
        else:
            learning = state.get("learning", {})
            for row, ts in zip(learning.get("rows", []), learning.get("times", []), strict=False):
                self.baseline.learn_one(np.asarray(row, dtype=np.float64), float(ts))
        self.alarm.restore(dict(state.get("alarm", {})))
        if self.scope is not None:
            self.scope.restore(dict(state.get("scope") or {}), len(self.flat_names))
        return True
