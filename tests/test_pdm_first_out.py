"""First-out alarm logic: cause features hold an alarm, lagging consequences are suppressed after it."""

from __future__ import annotations

from typing import Any

import numpy as np

from plugins.predictive_maintenance.health import FirstOutScope
from plugins.predictive_maintenance.monitor import MachineMonitor, MonitorSettings

LEVEL = 2.0


def _e(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def test_cause_holds_the_alarm_and_consequence_is_suppressed_until_back_in_band() -> None:
    scope = FirstOutScope(rearm=1.0, window_s=5.0)
    assert scope.score(_e(3.0, 0.2), active=False, level=LEVEL, ts=0.0) == 3.0
    scope.on_transition(_e(3.0, 0.2), raised=True, level=LEVEL, ts=0.0)
    # Feature 1 crosses long after the raise: a consequence. Only the cause (feature 0) counts.
    assert scope.score(_e(3.5, 4.0), active=True, level=LEVEL, ts=30.0) == 3.5
    assert scope.score(_e(0.5, 6.0), active=True, level=LEVEL, ts=60.0) == 0.5
    scope.on_transition(_e(0.5, 6.0), raised=False, level=LEVEL, ts=60.0)
    assert scope.suppressed_indices() == [1]
    # Still far out, but suppressed: the machine scores as healthy on its live features.
    assert scope.score(_e(0.3, 5.0), active=False, level=LEVEL, ts=61.0) == 0.3
    # Back inside the re-arm level once: armed again, and a new excursion counts.
    assert scope.score(_e(0.3, 0.9), active=False, level=LEVEL, ts=120.0) == 0.9
    assert scope.suppressed_indices() == []
    assert scope.score(_e(0.3, 4.0), active=False, level=LEVEL, ts=121.0) == 4.0


def test_crossings_within_the_first_out_window_are_co_causes() -> None:
    """A sensor blip that happens to lead a real fault must not turn the fault into its consequence."""
    scope = FirstOutScope(rearm=1.0, window_s=10.0)
    scope.on_transition(_e(2.5, 0.1), raised=True, level=LEVEL, ts=0.0)  # blip on feature 0
    assert scope.score(_e(1.0, 3.0), active=True, level=LEVEL, ts=6.0) == 3.0  # fault joins the cause
    scope.on_transition(_e(0.1, 3.0), raised=False, level=LEVEL, ts=100.0)
    assert scope.suppressed_indices() == []


def test_consequences_back_in_band_at_clear_are_not_suppressed_and_small_ones_never_are() -> None:
    scope = FirstOutScope(rearm=1.0, window_s=0.0)
    scope.on_transition(_e(3.0, 0.0, 0.0), raised=True, level=LEVEL, ts=0.0)
    scope.score(_e(3.0, 2.5, 1.5), active=True, level=LEVEL, ts=20.0)  # 1 over the level, 2 only over re-arm
    scope.on_transition(_e(0.2, 0.5, 1.5), raised=False, level=LEVEL, ts=40.0)
    assert scope.suppressed_indices() == []  # 1 is back in band, 2 never was a consequence


def test_scope_state_round_trip_mid_alarm() -> None:
    scope = FirstOutScope(window_s=5.0)
    scope.on_transition(_e(3.0, 0.0, 0.0), raised=True, level=LEVEL, ts=10.0)
    scope.score(_e(3.0, 2.5, 0.0), active=True, level=LEVEL, ts=30.0)
    restored = FirstOutScope(window_s=5.0)
    restored.restore(scope.to_state(), 3)
    assert restored.raised_at == 10.0
    assert restored.cause is not None and restored.cause.tolist() == [True, False, False]
    restored.on_transition(_e(0.1, 2.5, 0.0), raised=False, level=LEVEL, ts=40.0)
    assert restored.suppressed_indices() == [1]


def _stream(monitor: MachineMonitor, seconds: range, rng: np.random.Generator, fault: Any) -> list[bool]:
    active = []
    for t in seconds:
        vib, temp = fault(t)
        monitor.push(float(t), {"vibration": vib + rng.normal(0, 0.05), "temperature": temp + rng.normal(0, 0.3)})
        active.append(monitor.alarm.active)
    return active


def test_monitor_clears_when_the_cause_ends_although_the_motor_stays_hot() -> None:
    """Imbalance from 300 s to 400 s heats the motor, which is still hot for minutes after."""

    def imbalance(t: int) -> tuple[float, float]:
        vib = 1.0 + (3.0 if 300 <= t < 400 else 0.0)
        heat = 0.0 if t < 300 else (t - 300) / 100 * 3.0 if t < 400 else 3.0 * np.exp(-(t - 400) / 600)
        return vib, 20.0 + heat

    results = {}
    for first_out in (True, False):
        settings = MonitorSettings(learning_windows=200, first_out=first_out, min_duration_s=2.0)
        monitor = MachineMonitor("pump", ("vibration", "temperature"), settings)
        active = _stream(monitor, range(0, 700), np.random.default_rng(3), imbalance)
        results[first_out] = (np.asarray(active), monitor)
    on, monitor = results[True]
    off, _ = results[False]
    assert on[310:395].all() and off[310:395].all()  # the fault itself is flagged either way
    assert not on[420:].any()  # cleared within seconds of the fault's end
    assert off[420:500].all()  # without first-out the hot motor holds the alarm
    assert monitor.suppressed() == ["temperature.mean"]
    state = monitor.to_state()
    assert state["scope"]["suppressed"] == [1]


def test_monitor_restart_keeps_the_suppression() -> None:
    def fault(t: int) -> tuple[float, float]:
        return 1.0 + (3.0 if 250 <= t < 300 else 0.0), 20.0 + (0.0 if t < 250 else min(t - 250, 50) / 15)

    settings = MonitorSettings(learning_windows=200)
    monitor = MachineMonitor("pump", ("vibration", "temperature"), settings)
    _stream(monitor, range(0, 320), np.random.default_rng(5), fault)
    assert monitor.suppressed() == ["temperature.mean"] and not monitor.alarm.active
    again = MachineMonitor("pump", ("vibration", "temperature"), settings)
    assert again.restore(monitor.to_state())
    assert again.suppressed() == ["temperature.mean"]
    active = _stream(again, range(320, 360), np.random.default_rng(6), fault)
    assert not any(active)
