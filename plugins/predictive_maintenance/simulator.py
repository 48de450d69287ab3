"""A simulated motor-driven centrifugal pump rig, for the demo, the end-to-end tests and model training.

The physics is deliberately simple but causal, so faults show up on the channels a real rig would
show them on:

* the motor runs near its rated speed with a load-dependent slip; mains voltage fluctuates;
* the pump follows a quadratic head curve ``H = h0 * s**2 - k * Q**2`` against a system curve set by
  the valve opening; flow and pressure are read by sensors with a finite resolution (quantised);
* motor current follows hydraulic power over efficiency; winding temperature is a first-order lag of
  the copper losses, fluid temperature drifts slowly with ambient and pump heating;
* vibration RMS on two accelerometers: a floor, an unbalance term growing with speed squared,
  a bearing term, turbulence from the flow, plus sensor noise.

Faults (``FAULTS``) change the physics, not the readings directly: ``valve`` throttles the inlet
(flow falls, current falls, cavitation adds vibration), ``imbalance`` adds a rotating unbalance,
``bearing`` grows a bearing defect (vibration up, temperature up), ``overheat`` degrades cooling,
``leak`` opens a bypass (pressure falls, flow and current rise), ``cavitation`` (vapour bubbles
collapsing at the impeller: bursts of broadband vibration, a noisy pressure reading, a little less flow). Each has a severity that ramps up
over ``ramp_s`` seconds, which is what the degradation trend and remaining-life estimate see.

:class:`MachineSimulator` is what the demo and tests drive: ``period_s`` and ``messages(now)``
returning ``(topic suffix, JSON payload)`` pairs in the gateway's reading format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

CHANNELS: tuple[str, ...] = (
    "accel1_rms",
    "accel2_rms",
    "current",
    "pressure",
    "motor_temp",
    "fluid_temp",
    "voltage",
    "flow",
)

FAULTS: tuple[str, ...] = ("valve", "imbalance", "bearing", "overheat", "leak", "cavitation")


@dataclass
class Fault:
    """An injected fault: ``kind`` at full ``severity`` (0..1) after ``ramp_s`` seconds from ``start``."""

    kind: str
    start: float
    severity: float = 1.0
    ramp_s: float = 0.0
    stop: float | None = None

    def level(self, t: float) -> float:
        if t < self.start or (self.stop is not None and t >= self.stop):
            return 0.0
        if self.ramp_s <= 0:
            return self.severity
        return self.severity * min(1.0, (t - self.start) / self.ramp_s)


@dataclass
class PumpRig:
    """State and parameters of one simulated pump rig; :meth:`step` advances it by ``dt`` seconds."""

    rng: np.random.Generator
    rated_voltage: float = 230.0
    head0: float = 1.2
    valve: float = 1.0
    flow_resolution: float = 1.0
    ambient: float = 24.0
    unbalance: float = 0.004
    vib_floor: float = 0.025
    thermal_tau_s: float = 600.0
    faults: list[Fault] = field(default_factory=list)
    t: float = 0.0

    def __post_init__(self) -> None:
        self.motor_temp = math.nan  # settles at its steady state on the first step
        self.fluid_temp = math.nan
        self._ambient_drift = 0.0
        self._operating = 1.0

    @classmethod
    def random(cls, rng: np.random.Generator) -> PumpRig:
        """A rig with randomised size, set point and sensor quality (for training data)."""
        return cls(
            rng=rng,
            rated_voltage=float(rng.choice([120.0, 230.0, 400.0])),
            head0=float(rng.uniform(0.8, 2.0)),
            valve=float(rng.uniform(0.6, 1.0)),
            flow_resolution=float(rng.choice([0.0, 0.1, 0.5, 1.0])),
            ambient=float(rng.uniform(10.0, 35.0)),
            unbalance=float(rng.uniform(0.001, 0.01)),
            vib_floor=float(rng.uniform(0.01, 0.05)),
            thermal_tau_s=float(rng.uniform(200.0, 1500.0)),
        )

    def fault_level(self, kind: str) -> float:
        return max((f.level(self.t) for f in self.faults if f.kind == kind), default=0.0)

    def step(self, dt: float = 1.0) -> dict[str, float]:
        """Advance by ``dt`` seconds and return one reading of every channel."""
        rng = self.rng
        self.t += dt
        valve_f, imb_f, brg_f = self.fault_level("valve"), self.fault_level("imbalance"), self.fault_level("bearing")
        heat_f, leak_f = self.fault_level("overheat"), self.fault_level("leak")
        cav_f = self.fault_level("cavitation")
        # Slow random walks: ambient temperature and the process set point.
        self._ambient_drift += rng.normal(0.0, 0.002 * math.sqrt(dt))
        self._ambient_drift *= 1.0 - dt / 7200.0
        self._operating += rng.normal(0.0, 0.002 * math.sqrt(dt)) - (self._operating - 1.0) * dt / 600.0
        voltage = self.rated_voltage * (1.0 + rng.normal(0.0, 0.015))
        speed = min(1.05, voltage / self.rated_voltage) * (1.0 - 0.03 * self._operating)
        opening = max(0.05, self.valve * self._operating * (1.0 - 0.75 * valve_f))
        # Operating point: pump curve h0*s^2 - k*Q^2 meets system curve Q^2/opening^2 (+ bypass leak).
        k_pump, k_sys = 0.02, 0.03 / opening**2
        q = speed * math.sqrt(self.head0 / (k_pump + k_sys)) * 5.0
        q *= (1.0 + 0.6 * leak_f) * (1.0 - 0.08 * cav_f)
        pressure = max(0.0, self.head0 * speed**2 - k_pump * (q / 5.0) ** 2) * (1.0 - 0.5 * leak_f)
        pressure_reading = pressure + rng.normal(0.0, 0.05 * self.head0 * (1.0 + 3.0 * cav_f))
        flow_reading = q * (1.0 + rng.normal(0.0, 0.01))
        if self.flow_resolution > 0:
            flow_reading = round(flow_reading / self.flow_resolution) * self.flow_resolution
        hydraulic = pressure * q
        current_mean = (0.5 + 0.08 * hydraulic) * (230.0 / self.rated_voltage)
        current = current_mean * (1.0 + rng.normal(0.0, 0.08))
        # Thermal: winding temperature lags the (mean) copper losses; cooling degrades with the overheat fault.
        cooling = 1.0 - 0.6 * heat_f
        target = self.ambient + self._ambient_drift + 12.0 * (current_mean * self.rated_voltage / 230.0) ** 2 / cooling
        target += 15.0 * brg_f
        fluid_target = self.ambient + self._ambient_drift + 2.0 + 0.02 * hydraulic + 3.0 * valve_f
        if math.isnan(self.motor_temp):
            self.motor_temp, self.fluid_temp = target, fluid_target
        self.motor_temp += (target - self.motor_temp) * min(1.0, dt / self.thermal_tau_s)
        self.fluid_temp += (fluid_target - self.fluid_temp) * min(1.0, dt / (3 * self.thermal_tau_s))
        # Vibration RMS: floor + unbalance * speed^2 + bearing + cavitation + flow turbulence.
        vib_unbalance = (self.unbalance + 0.05 * imb_f) * speed**2
        vib_bearing = 0.04 * brg_f * (1.0 + 0.5 * abs(rng.standard_t(3)))
        vib_cavitation = (0.02 * valve_f + 0.05 * cav_f) * abs(rng.normal())
        turbulence = 0.002 * q / 5.0
        base = self.vib_floor + vib_unbalance + vib_bearing + vib_cavitation + turbulence
        accel1 = base * (1.0 + rng.normal(0.0, 0.03))
        accel2 = (base * 1.4 + 0.01) * (1.0 + rng.normal(0.0, 0.03))
        return {
            "accel1_rms": round(accel1, 6),
            "accel2_rms": round(accel2, 6),
            "current": round(current, 5),
            "pressure": round(pressure_reading, 5),
            "motor_temp": round(self.motor_temp + rng.normal(0.0, 0.05), 4),
            "fluid_temp": round(self.fluid_temp + rng.normal(0.0, 0.02), 4),
            "voltage": round(voltage, 3),
            "flow": round(flow_reading, 4),
        }

    def run(self, n: int, dt: float = 1.0) -> np.ndarray:
        """``n`` readings as an array ``(n, len(CHANNELS))``."""
        return np.array([[r[c] for c in CHANNELS] for r in (self.step(dt) for _ in range(n))])


class MachineSimulator:
    """Several simulated rigs publishing readings, with faults that can be started and stopped.

    ``messages(now)`` returns one message per machine (``("<machine>", payload)``); with ``batch`` > 1
    the machine's readings are grouped ``batch`` at a time into one batch payload, published when full.
    """

    def __init__(
        self,
        machines: Sequence[str] = ("pump-1",),
        period_s: float = 1.0,
        seed: int = 0,
        batch: int = 1,
    ) -> None:
        self.period_s = period_s
        self.batch = max(1, batch)
        self.rigs = {m: PumpRig(np.random.default_rng([seed, i])) for i, m in enumerate(machines)}
        self._pending: dict[str, list[dict[str, object]]] = {m: [] for m in machines}

    def start_fault(self, machine: str, kind: str, severity: float = 1.0, ramp_s: float = 0.0) -> None:
        """Start ``kind`` on ``machine`` from its next reading, reaching ``severity`` after ``ramp_s``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        rig = self.rigs[machine]
        rig.faults.append(Fault(kind, start=rig.t, severity=severity, ramp_s=ramp_s))

    def stop_faults(self, machine: str) -> None:
        """End every fault on ``machine``."""
        rig = self.rigs[machine]
        for f in rig.faults:
            if f.stop is None:
                f.stop = rig.t

    def messages(self, now: float) -> list[tuple[str, bytes]]:
        """Advance every rig by one period and return the messages due at wall time ``now``."""
        out: list[tuple[str, bytes]] = []
        for machine, rig in self.rigs.items():
            values = rig.step(self.period_s)
            reading = {"ts": round(now, 3), "values": values}
            if self.batch == 1:
                out.append((machine, json.dumps({"source": machine, **reading}).encode()))
                continue
            pending = self._pending[machine]
            pending.append(reading)
            if len(pending) >= self.batch:
                out.append((machine, json.dumps({"source": machine, "readings": pending}).encode()))
                self._pending[machine] = []
        return out
