"""The ``predictive_maintenance`` plugin: machine health, early fault alarms and remaining useful life.

Input: readings (``Reading.source`` = machine id, ``Reading.values`` = channels), single or batched.
Per machine a :class:`~plugins.predictive_maintenance.monitor.MachineMonitor` windows the readings,
computes condition-monitoring features, learns the machine's normal behaviour for a configurable
learning period, then scores each window (optionally with the int8 forecaster from the config's
``models:`` section) into a health index 0–100 with alarms and a remaining-useful-life estimate.

Outputs:

* ``State(key=<machine>)`` (retained): health, alarm, learning progress, top contributors, trend and
  remaining useful life with its band; rate-limited to one per ``state_interval_s`` per machine, and
  always on an alarm change;
* ``Event("alarm_raised" | "alarm_cleared")`` (QoS1) with the machine, onset, health and contributors;
* ``Summary`` per interval: per machine min/mean health, alarm seconds, windows scored.

What each machine has learned (baseline or learning progress, alarm state) is saved in the
pipeline's state store when learning completes, on every alarm change, every ``persist_interval_s``
and at shutdown, so a restart resumes instead of learning again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.messages import Event, InputMessage, Output, ReadingBatch, State, Summary
from gateway.plugin import ModelInfoLike, Plugin, PluginContext, PluginOptions
from plugins.predictive_maintenance.baseline import BaselineSettings
from plugins.predictive_maintenance.features import SCALAR_FEATURES, FeatureSet
from plugins.predictive_maintenance.monitor import MachineMonitor, MonitorSettings, WindowResult
from plugins.predictive_maintenance.scoring import InnovationScorer
from plugins.predictive_maintenance.windowing import WindowSpec

logger = logging.getLogger(__name__)

STATE_PREFIX = "machine/"


class WindowOptions(BaseModel):
    """How readings are cut into windows."""

    model_config = ConfigDict(extra="forbid")

    by: Literal["samples", "time"] = Field(
        default="samples", title="Window unit", description="`samples`: size/hop count readings; `time`: seconds."
    )
    size: float = Field(default=5, gt=0, title="Window size", description="Window length (samples or seconds).")
    hop: float = Field(
        default=1, gt=0, title="Hop", description="Step between windows (samples or seconds); hop < size means overlap."
    )
    max_gap_s: float = Field(
        default=10.0,
        gt=0,
        title="Maximum gap",
        description="A longer silence restarts the window (no window spans a gap).",
    )


class FeatureOptions(BaseModel):
    """Which condition-monitoring features each channel contributes."""

    model_config = ConfigDict(extra="forbid")

    scalar: list[str] = Field(
        default_factory=lambda: ["mean"],
        title="Scalar features",
        description=f"Per-channel features, any of: {', '.join(SCALAR_FEATURES)}.",
    )
    bands_hz: list[tuple[float, float]] = Field(
        default_factory=list,
        title="Spectral bands",
        description="[low, high) Hz bands whose FFT energy is a feature (raw vibration at kHz rates).",
    )
    envelope_bands_hz: list[tuple[float, float]] = Field(
        default_factory=list,
        title="Envelope bands",
        description="[low, high) Hz bands of the envelope spectrum (bearing defect frequencies).",
    )

    @model_validator(mode="after")
    def _known(self) -> FeatureOptions:
        unknown = [f for f in self.scalar if f not in SCALAR_FEATURES]
        if unknown:
            raise ValueError(f"unknown features {unknown}; known: {sorted(SCALAR_FEATURES)}")
        return self


class AlarmOptions(BaseModel):
    """When the health index raises and clears an alarm."""

    model_config = ConfigDict(extra="forbid")

    score: float = Field(
        default=2.25,
        gt=0,
        title="Alarm score",
        description="Feature exceedance (1 = edge of the learning period's normal range) at which health is 50.",
    )
    raise_below: float = Field(
        default=50.0, ge=0, le=100, title="Raise below", description="Health level raising an alarm."
    )
    clear_above: float = Field(
        default=55.0,
        ge=0,
        le=100,
        title="Clear above",
        description="Health level clearing it (hysteresis: >= raise_below).",
    )
    min_duration_s: float = Field(
        default=2.0,
        ge=0,
        title="Minimum duration",
        description="Seconds health must stay past a level before raising/clearing.",
    )

    first_out: bool = Field(
        default=True,
        title="First-out logic",
        description="An alarm is held only by the features that raised it (those crossing within "
        "`first_out_window_s`); features that left their band as its consequences are suppressed after it "
        "clears until they are back in their band. False: any feature holds and raises alarms.",
    )
    first_out_window_s: float = Field(
        default=10.0,
        ge=0,
        title="First-out window",
        description="Seconds after a raise during which further crossing features count as its cause.",
    )
    rearm_exceedance: float = Field(
        default=1.0,
        gt=0,
        title="Re-arm level",
        description="Exceedance (1 = edge of the learning period's range) a suppressed feature must fall below "
        "to raise alarms again.",
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> AlarmOptions:
        if self.clear_above < self.raise_below:
            raise ValueError("clear_above must not be below raise_below")
        return self


class PredictiveMaintenanceOptions(PluginOptions):
    """Options of the ``predictive_maintenance`` plugin."""

    machines: list[str] | None = Field(
        default=None, title="Machines", description="Machine ids (reading sources) to monitor; none: every source seen."
    )
    channels: list[str] | None = Field(
        default=None,
        title="Channels",
        description="Channels to use; none: the numeric channels of each machine's first reading.",
    )
    max_machines: int = Field(
        default=256, ge=1, title="Machine cap", description="Further new machines are ignored (counted)."
    )
    window: WindowOptions = Field(default_factory=WindowOptions, title="Windowing", description="Window size and hop.")
    features: FeatureOptions = Field(
        default_factory=FeatureOptions, title="Features", description="Features per channel."
    )
    learning_windows: int = Field(
        default=400,
        ge=10,
        title="Learning period",
        description="Windows of normal operation learned before scoring starts.",
    )
    drift_horizon_s: float = Field(
        default=2400.0,
        gt=0,
        title="Drift horizon",
        description="Seconds the learned baseline must hold: slowly wandering channels get a band wide enough "
        "for this long.",
    )
    shift_k: float | None = Field(
        default=2.0,
        gt=0,
        title="Shift detector allowance",
        description="A CUSUM per feature over signed exceedances with this allowance: catches small persistent "
        "shifts (a slowly closing valve) that stay just under the alarm score, and holds an alarm a few seconds "
        "longer after the fault. Lower values react to smaller shifts. None: off.",
    )
    shift_h: float = Field(
        default=20.0, gt=0, title="Shift detector threshold", description="CUSUM level that counts as the alarm score."
    )
    alarm: AlarmOptions = Field(default_factory=AlarmOptions, title="Alarm", description="Alarm levels and timing.")
    trend_span_s: float = Field(
        default=3600.0,
        gt=0,
        title="Trend span",
        description="Seconds of health history the degradation trend is fitted on.",
    )
    top_contributors: int = Field(
        default=3, ge=1, title="Contributors", description="Channel features listed per result."
    )
    model: str | None = Field(
        default=None,
        title="Forecaster model",
        description="Name of a model in the config's `models:` section (the shipped one is "
        "`pkg://plugins.predictive_maintenance/models/pdm_forecaster_int8.tflite`); none: statistics only.",
    )
    state_interval_s: float = Field(
        default=5.0,
        ge=0,
        title="State rate limit",
        description="Least seconds between two retained states of one machine.",
    )
    persist_interval_s: float = Field(
        default=60.0, gt=0, title="Persistence interval", description="Seconds between writes of learning progress."
    )

    def monitor_settings(self) -> MonitorSettings:
        return MonitorSettings(
            window=WindowSpec(self.window.size, self.window.hop, self.window.by, self.window.max_gap_s),
            features=FeatureSet(
                tuple(self.features.scalar),
                tuple(tuple(b) for b in self.features.bands_hz),  # type: ignore[misc]
                tuple(tuple(b) for b in self.features.envelope_bands_hz),  # type: ignore[misc]
            ),
            baseline=BaselineSettings(drift_horizon_s=self.drift_horizon_s),
            learning_windows=self.learning_windows,
            alarm_score=self.alarm.score,
            alarm_below=self.alarm.raise_below,
            clear_above=self.alarm.clear_above,
            min_duration_s=self.alarm.min_duration_s,
            trend_span_s=self.trend_span_s,
            top_contributors=self.top_contributors,
            shift_k=self.shift_k,
            shift_h=self.shift_h,
            first_out=self.alarm.first_out,
            rearm_exceedance=self.alarm.rearm_exceedance,
            first_out_window_s=self.alarm.first_out_window_s,
        )


@dataclass
class IntervalStats:
    """Per-machine aggregates of the current summary interval."""

    windows: int = 0
    health_sum: float = 0.0
    health_min: float = math.inf
    alarm_s: float = 0.0
    last_ts: float | None = None
    alarms_raised: int = 0


@dataclass
class MachineSlot:
    """One monitored machine and its output bookkeeping."""

    monitor: MachineMonitor
    stats: IntervalStats = field(default_factory=IntervalStats)
    last_state_at: float = -math.inf
    last_persist_at: float = -math.inf
    was_learning: bool = True


def _round(v: float | None, nd: int = 2) -> float | None:
    return None if v is None else round(v, nd)


class PredictiveMaintenancePlugin(Plugin[PredictiveMaintenanceOptions]):
    """Monitors machines' health from their readings; raises and clears fault alarms."""

    name = "predictive_maintenance"
    options_model = PredictiveMaintenanceOptions
    input_kind = "readings"

    def __init__(self, options: PredictiveMaintenanceOptions, context: PluginContext) -> None:
        super().__init__(options, context)
        self.log = context.logger or logger
        self.settings = options.monitor_settings()
        self._model: Any = context.models.get(options.model) if options.model else None
        self._scorer = InnovationScorer(self._model) if self._model is not None else None
        self._machines: dict[str, MachineSlot] = {}
        self._ignored: set[str] = set()
        self.readings = 0

    # ------------------------------------------------------------------ machines

    def _slot(self, machine: str, values: dict[str, float]) -> MachineSlot | None:
        slot = self._machines.get(machine)
        if slot is not None:
            return slot
        if machine in self._ignored:
            return None
        if self.options.machines is not None and machine not in self.options.machines:
            self._ignored.add(machine)
            return None
        if len(self._machines) >= self.options.max_machines:
            self.log.warning("machine cap %d reached; ignoring %s", self.options.max_machines, machine)
            self._ignored.add(machine)
            return None
        channels = self.options.channels or sorted(
            k for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        if not channels:
            return None
        monitor = MachineMonitor(machine, channels, self.settings, self._scorer)
        stored = self.context.state.get(STATE_PREFIX + machine)
        if isinstance(stored, dict) and monitor.restore(stored):
            self.log.info("machine %s: resumed (%s)", machine, "learned" if not monitor.learning else "learning")
        slot = MachineSlot(monitor, was_learning=monitor.learning)
        self._machines[machine] = slot
        return slot

    def _persist(self, machine: str, slot: MachineSlot, now: float) -> None:
        self.context.state.put(STATE_PREFIX + machine, slot.monitor.to_state())
        slot.last_persist_at = now

    # ------------------------------------------------------------------ plugin API

    def process(self, message: InputMessage) -> Iterable[Output]:
        if not isinstance(message, ReadingBatch):
            return []
        outputs: list[Output] = []
        for reading in message.readings:
            self.readings += 1
            values = dict(reading.values)
            slot = self._slot(reading.source, values)
            if slot is None:
                continue
            for result in slot.monitor.push(reading.ts, values):
                self._on_result(reading.source, slot, result, outputs)
        return outputs

    def _on_result(self, machine: str, slot: MachineSlot, result: WindowResult, outputs: list[Output]) -> None:
        now = result.ts
        if result.health is None:  # still learning
            if now - slot.last_persist_at >= self.options.persist_interval_s:
                self._persist(machine, slot, now)
            if now - slot.last_state_at >= self.options.state_interval_s:
                outputs.append(State(self._state_data(machine, result), key=machine))
                slot.last_state_at = now
            return
        stats = slot.stats
        if stats.last_ts is not None and slot.monitor.alarm.active:
            stats.alarm_s += max(0.0, now - stats.last_ts)
        stats.last_ts = now
        stats.windows += 1
        stats.health_sum += result.health
        stats.health_min = min(stats.health_min, result.health)
        changed = result.transition is not None
        if slot.was_learning:
            slot.was_learning = False
            self._persist(machine, slot, now)
        if result.transition is not None:
            t = result.transition
            data: dict[str, Any] = {
                "machine": machine,
                "onset": t.onset,
                "health": _round(result.health),
                "score": _round(result.score, 3),
                "top_contributors": [c.as_dict() for c in slot.monitor.contributors()],
            }
            if t.raised:
                stats.alarms_raised += 1
                outputs.append(Event("alarm_raised", data, ts=t.ts))
            else:
                data["duration_s"] = round(t.ts - t.onset, 3)
                outputs.append(Event("alarm_cleared", data, ts=t.ts))
            self._persist(machine, slot, now)
        if changed or now - slot.last_state_at >= self.options.state_interval_s:
            outputs.append(State(self._state_data(machine, result), key=machine))
            slot.last_state_at = now

    def _state_data(self, machine: str, r: WindowResult) -> dict[str, Any]:
        data: dict[str, Any] = {
            "machine": machine,
            "ts": r.ts,
            "learning": r.health is None,
            "learning_progress": round(r.learning_progress, 3),
        }
        if r.health is None:
            return data
        monitor = self._machines[machine].monitor
        rul = monitor.remaining_life()
        data.update(
            {
                "health": _round(r.health),
                "alarm": r.alarm_active,
                "onset": monitor.alarm.onset,
                "top_contributors": [c.as_dict() for c in monitor.contributors()],
                "suppressed": monitor.suppressed(),
            }
        )
        if rul is not None:
            data["trend_per_hour"] = round(rul.slope_per_hour, 3)
            data["rul_s"] = _round(rul.rul_s, 1)
            data["rul_low_s"] = _round(rul.rul_low_s, 1)
            data["rul_high_s"] = _round(rul.rul_high_s, 1)
        return data

    def summarize(self, start: float, end: float) -> Iterable[Output]:
        machines: dict[str, Any] = {}
        for name, slot in self._machines.items():
            s = slot.stats
            if s.windows:
                machines[name] = {
                    "health_min": round(s.health_min, 2),
                    "health_mean": round(s.health_sum / s.windows, 2),
                    "alarm_s": round(s.alarm_s, 1),
                    "alarms_raised": s.alarms_raised,
                    "windows": s.windows,
                    "alarm_active": slot.monitor.alarm.active,
                }
            else:
                machines[name] = {
                    "learning": True,
                    "learning_progress": _round(slot.monitor.last.learning_progress if slot.monitor.last else 0.0, 3),
                }
            slot.stats = IntervalStats(last_ts=s.last_ts)
        data = {"readings": self.readings, "machines": machines, "ignored_machines": len(self._ignored)}
        self.readings = 0
        return [Summary(data, start, end)]

    def model_info(self) -> ModelInfoLike | None:
        info = getattr(self._model, "info", None)
        return info if info is not None else None

    def close(self) -> None:
        now = self.context.clock()
        for machine, slot in self._machines.items():
            self._persist(machine, slot, now)
        close = getattr(self._model, "close", None)
        if callable(close):
            close()
