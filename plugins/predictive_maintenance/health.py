"""Health index, alarm state with hysteresis, and degradation trend with remaining useful life.

* :func:`health_from_score` maps an anomaly score (max feature exceedance, 1.0 = edge of normal) to
  a 0–100 health index: ``100 * 2 ** -((score / alarm_score) ** 2)``, so the index is 50 exactly at
  the alarm score, ~90 for learning-period extremes and falls quickly beyond.
* :class:`AlarmTracker` raises when health stays below ``alarm_below`` for ``min_duration_s`` and
  clears when it stays above ``clear_above`` for ``min_duration_s`` (hysteresis both in level and
  in time, so a noisy index does not flap).
* :class:`DegradationTrend` fits a line to the recent health index (least squares over a sliding
  time span) and extrapolates when it crosses the alarm level; the uncertainty band comes from the
  slope's standard error (slope ± 2 SE), giving an earliest/latest crossing.
* :class:`FirstOutScope` keeps an alarm about the features that raised it (first-out logic): while
  the alarm is active only those *cause* features can hold it, and features that left their band
  during the alarm as a consequence (a motor heating up behind an imbalance) are suppressed after it
  clears until they are back inside their normal band.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray


def health_from_score(score: float, alarm_score: float) -> float:
    """Health index 0–100 of an anomaly score; 50 at ``alarm_score``."""
    if not math.isfinite(score):
        return 0.0
    return float(100.0 * 2.0 ** (-((max(score, 0.0) / alarm_score) ** 2)))


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """An alarm was raised (``raised=True``) or cleared at ``ts``; ``onset`` is when it started."""

    raised: bool
    ts: float
    onset: float


@dataclass
class AlarmTracker:
    """Alarm state of one machine with level hysteresis and a minimum duration."""

    alarm_below: float = 50.0
    clear_above: float = 60.0
    min_duration_s: float = 0.0
    active: bool = False
    onset: float | None = None
    _pending_since: float | None = None

    def update(self, ts: float, health: float) -> AlarmTransition | None:
        """Feed one health value; return the transition it caused, if any."""
        crossing = health < self.alarm_below if not self.active else health > self.clear_above
        if not crossing:
            self._pending_since = None
            return None
        if self._pending_since is None:
            self._pending_since = ts
        if ts - self._pending_since < self.min_duration_s:
            return None
        start = self._pending_since
        self._pending_since = None
        if not self.active:
            self.active, self.onset = True, start
            return AlarmTransition(raised=True, ts=ts, onset=start)
        onset = self.onset if self.onset is not None else start
        self.active, self.onset = False, None
        return AlarmTransition(raised=False, ts=ts, onset=onset)

    def to_state(self) -> dict[str, float | bool | None]:
        return {"active": self.active, "onset": self.onset}

    def restore(self, state: dict[str, float | bool | None]) -> None:
        self.active = bool(state.get("active", False))
        onset = state.get("onset")
        self.onset = float(onset) if isinstance(onset, (int, float)) and not isinstance(onset, bool) else None


@dataclass(frozen=True, slots=True)
class RemainingLife:
    """Time until the health index reaches the alarm level, with a band; ``None`` = not degrading."""

    slope_per_hour: float
    rul_s: float | None
    rul_low_s: float | None
    rul_high_s: float | None


@dataclass
class DegradationTrend:
    """Least-squares trend of the health index over the last ``span_s`` seconds.

    Keeps running sums, so adding a point and estimating are O(1) whatever the span holds; times are
    taken relative to the first point seen to keep the sums well conditioned.
    """

    span_s: float = 3600.0
    alarm_level: float = 50.0
    min_points: int = 10
    _points: deque[tuple[float, float]] = field(default_factory=deque, repr=False)
    _origin: float | None = field(default=None, repr=False)
    _sums: list[float] = field(default_factory=lambda: [0.0] * 5, repr=False)  # t, h, tt, th, hh

    def _add(self, t: float, h: float, sign: float) -> None:
        s = self._sums
        s[0] += sign * t
        s[1] += sign * h
        s[2] += sign * t * t
        s[3] += sign * t * h
        s[4] += sign * h * h

    def update(self, ts: float, health: float) -> None:
        if self._origin is None:
            self._origin = ts
        t = ts - self._origin
        self._points.append((t, health))
        self._add(t, health, 1.0)
        while self._points and self._points[0][0] < t - self.span_s:
            old_t, old_h = self._points.popleft()
            self._add(old_t, old_h, -1.0)

    def estimate(self) -> RemainingLife:
        """Current slope and remaining-useful-life estimate."""
        n = len(self._points)
        if n < self.min_points:
            return RemainingLife(0.0, None, None, None)
        st, sh, stt, sth, shh = self._sums
        t_mean, h_mean = st / n, sh / n
        sxx = stt - n * t_mean * t_mean
        if sxx <= 1e-9:
            return RemainingLife(0.0, None, None, None)
        slope = (sth - n * t_mean * h_mean) / sxx
        syy = shh - n * h_mean * h_mean
        sse = max(syy - slope * slope * sxx, 0.0)
        se = math.sqrt(sse / max(n - 2, 1) / sxx)
        now = self._points[-1][0]
        current = h_mean + slope * (now - t_mean)
        margin = current - self.alarm_level

        def crossing(rate: float) -> float | None:
            if margin <= 0:
                return 0.0
            return margin / -rate if rate < 0 else None

        # The steeper bound gives the earliest crossing, the shallower the latest (None = never).
        return RemainingLife(slope * 3600.0, crossing(slope), crossing(slope - 2 * se), crossing(slope + 2 * se))


@dataclass
class FirstOutScope:
    """Which features an alarm is about: first-out cause and suppression of its consequences.

    A fault rarely moves one quantity only: an imbalance heats the motor, a closing valve changes
    the fluid temperature. Those consequences lag the cause and outlast it, so an alarm held by
    "any feature out of band" stays up long after the fault itself is gone. Alarm management
    handles this with first-out logic and suppression of consequential alarms; this is that, per
    feature:

    * when an alarm is raised, the features over the alarm score at that moment are its **cause**
      (the largest one if none is, e.g. after hysteresis), and so are those that cross it within
      ``window_s`` of the raise: near-simultaneous crossings are one event whose first-out is not
      resolved by a few seconds (a sensor blip that happens to lead a real fault must not make
      the fault its consequence);
    * while the alarm is active, only the cause features count (:meth:`score`), so the alarm clears
      when the fault's own features are back, whatever its consequences do;
    * features that went over the alarm score while the alarm was active without being its cause
      (later than ``window_s`` after the raise) are its **consequences**. When it clears, each
      consequence still outside ``rearm`` (exceedance; 1.0 = the edge of what the learning period
      saw) is **suppressed**: it cannot raise an alarm until it has come back inside ``rearm``
      once. A suppressed feature is a blind spot for that time; the set is reported
      (:meth:`suppressed_indices`) so it can be shown.

    Per window: :meth:`score` with the window's exceedances, its result to the alarm tracker, then
    :meth:`on_transition` with the tracker's transition, if any.
    """

    rearm: float = 1.0
    window_s: float = 10.0
    raised_at: float | None = None
    cause: NDArray[np.bool_] | None = None
    consequences: NDArray[np.bool_] | None = None
    suppressed: NDArray[np.bool_] | None = None

    def _ensure(self, n: int) -> NDArray[np.bool_]:
        if self.suppressed is None or self.suppressed.shape != (n,):
            self.suppressed = np.zeros(n, dtype=bool)
        return self.suppressed

    def score(self, exceedance: NDArray[np.float64], active: bool, level: float, ts: float) -> float:
        """Alarm-deciding score of the window ending at ``ts``: max exceedance over the features that count.

        ``level`` is the alarm score; while active, features over it join the cause within ``window_s``
        of the raise and are noted as consequences after that.
        """
        e = np.asarray(exceedance, dtype=np.float64)
        if e.size == 0:
            return 0.0
        suppressed = self._ensure(e.size)
        suppressed &= e >= self.rearm  # back inside the band once: armed again
        if active and self.cause is not None and self.cause.shape == e.shape and self.cause.any():
            if self.consequences is None or self.consequences.shape != e.shape:
                self.consequences = np.zeros(e.size, dtype=bool)
            over = e >= level
            if self.raised_at is not None and ts - self.raised_at <= self.window_s:
                self.cause |= over & ~suppressed
            self.consequences |= ~self.cause & over
            return float(e[self.cause].max())
        live = e[~suppressed]
        return float(live.max()) if live.size else 0.0

    def on_transition(self, exceedance: NDArray[np.float64], raised: bool, level: float, ts: float) -> None:
        """Record the cause of an alarm raised at ``ts`` (``level``: the alarm score); suppress consequences at clear."""
        e = np.asarray(exceedance, dtype=np.float64)
        suppressed = self._ensure(e.size)
        if raised:
            cause = (e >= level) & ~suppressed
            if not cause.any():
                cause = np.zeros(e.size, dtype=bool)
                cause[int(np.argmax(np.where(suppressed, -np.inf, e)))] = True
            self.cause, self.raised_at = cause, ts
            self.consequences = np.zeros(e.size, dtype=bool)
            return
        if self.consequences is not None and self.consequences.shape == e.shape:
            suppressed |= self.consequences & (e >= self.rearm)
        self.cause = self.consequences = self.raised_at = None

    def suppressed_indices(self) -> list[int]:
        """Indices of the features currently suppressed as consequences of a past alarm."""
        return [] if self.suppressed is None else [int(i) for i in np.flatnonzero(self.suppressed)]

    def to_state(self) -> dict[str, Any]:
        """JSON state: the active alarm's raise time, cause and consequences, and the suppressed features."""

        def indices(m: NDArray[np.bool_] | None) -> list[int] | None:
            return None if m is None else [int(i) for i in np.flatnonzero(m)]

        return {
            "raised_at": self.raised_at,
            "cause": indices(self.cause),
            "consequences": indices(self.consequences),
            "suppressed": self.suppressed_indices(),
        }

    def restore(self, state: dict[str, Any], n: int) -> None:
        """Restore :meth:`to_state` output for ``n`` features (indices out of range are ignored)."""

        def mask(indices: Any) -> NDArray[np.bool_]:
            m = np.zeros(n, dtype=bool)
            for i in indices or []:
                if isinstance(i, int) and 0 <= i < n:
                    m[i] = True
            return m

        cause, consequences = state.get("cause"), state.get("consequences")
        self.cause = None if cause is None else mask(cause)
        self.consequences = None if cause is None else mask(consequences)
        self.suppressed = mask(state.get("suppressed"))
        raised_at = state.get("raised_at")
        self.raised_at = float(raised_at) if isinstance(raised_at, (int, float)) and cause is not None else None
