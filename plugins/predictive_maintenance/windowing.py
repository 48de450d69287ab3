"""Per-machine sliding windows over irregular, multichannel readings.

A :class:`MachineWindow` turns a stream of ``(ts, {channel: value})`` readings of one machine into
fixed-shape ``(channels, samples)`` windows, by sample count or by time, with overlap. The rules for
imperfect streams (documented in ``docs/predictive_maintenance.md``):

* **Out of order / late**: a reading older than the newest accepted one is dropped and counted
  (``late``); windows only move forward in time, so a late reading can never rewrite a result that
  was already published.
* **Duplicates**: a reading whose timestamp equals the newest accepted one (within ``1e-6`` s) is
  dropped and counted (``duplicates``); QoS1 redeliveries are therefore harmless.
* **Gaps**: a jump of more than ``max_gap_s`` between consecutive readings empties the buffer
  (``gaps``): no window ever spans a gap, the next one starts after it.
* **Different sample rates / missing channels**: each reading may carry any subset of the channels;
  a missing channel holds its last value (sample-and-hold) for up to ``max_gap_s``. A row is only
  buffered once every channel has been seen at least once.
* **Non-finite values** (NaN, inf, non-numbers) count as missing for that channel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

MAX_CAPACITY = 1 << 20
"""Upper bound on buffered rows per machine (time windows grow their ring up to this)."""


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Window length and hop, in samples (``by="samples"``) or seconds (``by="time"``)."""

    size: float
    hop: float
    by: str = "samples"
    max_gap_s: float = 10.0

    def __post_init__(self) -> None:
        if self.by not in ("samples", "time"):
            raise ValueError("window 'by' must be 'samples' or 'time'")
        if self.size <= 0 or self.hop <= 0:
            raise ValueError("window size and hop must be positive")


@dataclass(frozen=True, slots=True, eq=False)
class Window:
    """One window of one machine: samples ``(channels, n)`` ending at ``end_ts``."""

    machine: str
    channels: tuple[str, ...]
    samples: NDArray[np.float64]
    timestamps: NDArray[np.float64]

    @property
    def start_ts(self) -> float:
        return float(self.timestamps[0])

    @property
    def end_ts(self) -> float:
        return float(self.timestamps[-1])

    @property
    def sample_rate_hz(self) -> float:
        """Mean sample rate over the window (1.0 when it cannot be estimated)."""
        span = float(self.timestamps[-1] - self.timestamps[0])
        n = self.timestamps.shape[0]
        return (n - 1) / span if n > 1 and span > 0 else 1.0


@dataclass
class StreamCounters:
    """What a window did with the readings it was given."""

    accepted: int = 0
    late: int = 0
    duplicates: int = 0
    gaps: int = 0
    incomplete: int = 0


@dataclass
class MachineWindow:
    """Sliding window over one machine's readings; ``push`` returns the windows that became due.

    The buffer is a ring of ``capacity`` rows: exactly one window (plus ``history``) for sample
    windows; for time windows it starts at ``capacity`` and doubles while one window's span does not
    fit, up to :data:`MAX_CAPACITY`, so memory per machine stays bounded whatever the input rate. ``history`` extra rows are kept
    behind each window for consumers that need a longer look-back (see :meth:`tail`).
    """

    machine: str
    channels: tuple[str, ...]
    spec: WindowSpec
    capacity: int = 1024
    history: int = 0
    counters: StreamCounters = field(default_factory=StreamCounters)

    def __post_init__(self) -> None:
        n_ch = len(self.channels)
        if self.spec.by == "samples":
            self.capacity = max(int(self.spec.size) + self.history, 2)
        self._values = np.zeros((self.capacity, n_ch), dtype=np.float64)
        self._ts = np.zeros(self.capacity, dtype=np.float64)
        self._count = 0  # rows in the buffer
        self._head = 0  # next write position
        self._last_ts = -math.inf
        self._held = np.full(n_ch, np.nan)
        self._held_ts = np.full(n_ch, -math.inf)
        self._since_emit = 0
        self._next_emit_ts = -math.inf
        self._index = {c: i for i, c in enumerate(self.channels)}

    @property
    def last_ts(self) -> float:
        """Timestamp of the newest accepted reading (``-inf`` before the first)."""
        return self._last_ts

    def reset(self) -> None:
        """Forget buffered samples (after a gap); held channel values are kept."""
        self._count = 0
        self._since_emit = 0
        self._next_emit_ts = -math.inf

    def push(self, ts: float, values: Mapping[str, float]) -> list[Window]:
        """Add one reading; return the windows completed by it (zero or one, in time order)."""
        if ts < self._last_ts - 1e-6:
            self.counters.late += 1
            return []
        if abs(ts - self._last_ts) <= 1e-6:
            self.counters.duplicates += 1
            return []
        if ts - self._last_ts > self.spec.max_gap_s and self._last_ts > -math.inf:
            self.counters.gaps += 1
            self.reset()
        self._last_ts = ts
        for name, value in values.items():
            i = self._index.get(name)
            if i is None:
                continue
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(v):
                self._held[i] = v
                self._held_ts[i] = ts
        stale = (ts - self._held_ts) > self.spec.max_gap_s
        if np.isnan(self._held).any() or stale.any():
            self.counters.incomplete += 1
            return []
        self.counters.accepted += 1
        if self._count == self.capacity and self.spec.by == "time" and ts - self._oldest_ts() < self.spec.size:
            self._grow()
        self._values[self._head] = self._held
        self._ts[self._head] = ts
        self._head = (self._head + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)
        self._since_emit += 1
        return self._due(ts)

    def push_many(self, rows: Sequence[tuple[float, Mapping[str, float]]]) -> list[Window]:
        """Push several readings in order; return all windows they completed."""
        out: list[Window] = []
        for ts, values in rows:
            out.extend(self.push(ts, values))
        return out

    def _due(self, ts: float) -> list[Window]:
        spec = self.spec
        if spec.by == "samples":
            size = int(spec.size)
            if self._count < size or self._since_emit < int(spec.hop):
                return []
            self._since_emit = 0
            return [self._window(size)]
        # By time: the window covers (ts - size, ts] and is emitted every `hop` seconds once the
        # buffered rows span at least 90 % of the window length (so the first one is not short).
        if ts < self._next_emit_ts - 1e-9:
            return []
        if ts - self._oldest_ts() < 0.9 * spec.size:
            return []
        rows = self._rows_since(ts - spec.size)
        if rows < 2:
            return []
        self._next_emit_ts = ts + spec.hop
        return [self._window(rows)]

    def _grow(self) -> None:
        """Double the ring (time windows at a high sample rate), up to ``MAX_CAPACITY`` rows."""
        if self.capacity >= MAX_CAPACITY:
            return
        order = (self._head - self._count + np.arange(self._count)) % self.capacity
        new_capacity = min(self.capacity * 2, MAX_CAPACITY)
        values = np.zeros((new_capacity, self._values.shape[1]))
        stamps = np.zeros(new_capacity)
        values[: self._count] = self._values[order]
        stamps[: self._count] = self._ts[order]
        self._values, self._ts, self.capacity = values, stamps, new_capacity
        self._head = self._count % new_capacity

    def _oldest_ts(self) -> float:
        return float(self._ts[(self._head - self._count) % self.capacity])

    def _rows_since(self, t0: float) -> int:
        idx = (self._head - 1 - np.arange(self._count)) % self.capacity
        return int(np.count_nonzero(self._ts[idx] > t0))

    def _window(self, n: int) -> Window:
        idx = (self._head - n + np.arange(n)) % self.capacity
        return Window(
            machine=self.machine,
            channels=self.channels,
            samples=self._values[idx].T.copy(),
            timestamps=self._ts[idx].copy(),
        )

    def tail(self, n: int) -> NDArray[np.float64]:
        """The newest ``n`` buffered rows as ``(channels, n)`` (fewer if the buffer holds fewer)."""
        n = min(n, self._count)
        idx = (self._head - n + np.arange(n)) % self.capacity
        return np.ascontiguousarray(self._values[idx].T, dtype=np.float64)
