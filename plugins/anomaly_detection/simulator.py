"""A demo source of sensor readings: a few periodic series with occasional injected anomalies.

``messages(now)`` returns ``(topic suffix, JSON payload)`` pairs, one per simulated machine, in the
gateway's readings format ``{"ts": <epoch s>, "source": "<name>", "values": {"<channel>": <float>}}``.
Anomalies (a spike, a level shift, a flat line) are injected at random with a given probability per tick
and last a while; :attr:`injected` records them so a demo or test can check what was found.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InjectedAnomaly:
    """One anomaly the simulator injected."""

    series: str
    kind: str
    start: float
    end: float


@dataclass
class _Channel:
    mean: float
    amplitude: float
    period_s: float
    noise: float
    phase: float


@dataclass
class SensorSimulator:
    """Periodic sensor series (temperature, flow, power per machine) with injected anomalies."""

    machines: int = 3
    period_s: float = 1.0
    anomaly_probability: float = 0.002
    cycle_s: float = 600.0  # length of one simulated "day"
    seed: int = 0
    quiet_s: float = 0.0  # no anomalies during the first quiet_s seconds (lets detectors learn)
    injected: list[InjectedAnomaly] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._channels: dict[str, dict[str, _Channel]] = {}
        for m in range(self.machines):
            name = f"machine-{m + 1}"
            self._channels[name] = {
                "temperature": _Channel(45 + 5 * m, 6.0, self.cycle_s, 0.3, self._rng.uniform(0, 6.28)),
                "flow": _Channel(120.0, 25.0, self.cycle_s / 2, 2.0, self._rng.uniform(0, 6.28)),
                "power": _Channel(3.5, 1.2, self.cycle_s, 0.05, self._rng.uniform(0, 6.28)),
            }
        self._active: dict[str, tuple[InjectedAnomaly, float]] = {}
        self._first: float | None = None

    def _maybe_inject(self, series: str, now: float, normal: float, ch: _Channel) -> float:
        active = self._active.get(series)
        if active is not None and now >= active[0].end:
            del self._active[series]
            active = None
        quiet = self._first is None or now - self._first < self.quiet_s
        if active is None and not quiet and self._rng.random() < self.anomaly_probability:
            kind = self._rng.choice(["spike", "level_shift", "flat"])
            duration = self.period_s if kind == "spike" else self._rng.uniform(0.05, 0.2) * self.cycle_s
            anomaly = InjectedAnomaly(series, kind, now, now + duration)
            self.injected.append(anomaly)
            logger.debug("injected %s into %s", kind, series)
            active = (anomaly, normal)
            self._active[series] = active
        if active is None:
            return normal
        anomaly, frozen = active
        if anomaly.kind == "spike":
            return normal + 12 * ch.amplitude
        if anomaly.kind == "level_shift":
            return normal + 3 * ch.amplitude
        return frozen

    def messages(self, now: float) -> list[tuple[str, bytes]]:
        """One reading per machine at time ``now`` (epoch seconds)."""
        out: list[tuple[str, bytes]] = []
        if self._first is None:
            self._first = now
        for machine, channels in self._channels.items():
            values: dict[str, float] = {}
            for name, ch in channels.items():
                normal = ch.mean + ch.amplitude * math.sin(2 * math.pi * now / ch.period_s + ch.phase)
                normal += self._rng.gauss(0.0, ch.noise)
                values[name] = round(self._maybe_inject(f"{machine}/{name}", now, normal, ch), 4)
            payload = {"ts": now, "source": machine, "values": values}
            out.append((f"{machine}", json.dumps(payload).encode()))
        return out
