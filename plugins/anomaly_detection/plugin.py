"""The ``anomaly_detection`` plugin: every numeric series the pipeline sees, scored online.

Each channel of each source is one series (``"<source>/<channel>"``) with its own
:class:`~plugins.anomaly_detection.detector.SeriesDetector`, created on first sight up to a cap. Scores
turn into alarms with hysteresis (start above ``threshold_on``, end below ``threshold_off``); outputs are
an optional rate-limited score stream, ``anomaly_start`` / ``anomaly_end`` events, retained per-series
state and an interval summary. What each detector has learned is written to the pipeline's state store
periodically and at close, and read back when the pipeline starts.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.messages import Event, InputMessage, Output, ReadingBatch, State, Summary, Telemetry
from gateway.plugin import ModelInfoLike, Plugin, PluginContext, PluginOptions
from plugins.anomaly_detection.detector import DetectorConfig, SeriesDetector
from plugins.anomaly_detection.forecaster import ModelForecaster

logger = logging.getLogger(__name__)

STATE_PREFIX = "series/"


class SeriesOverride(BaseModel):
    """Settings for the series whose id (``<source>/<channel>``) matches a glob."""

    model_config = ConfigDict(extra="forbid")

    match: str = Field(title="Series glob", description="fnmatch pattern on `<source>/<channel>`, e.g. `pump*/temp`.")
    enabled: bool | None = Field(default=None, title="Enabled", description="`false` ignores matching series entirely.")
    learning_samples: int | None = Field(
        default=None, ge=0, title="Learning samples", description="Overrides the default."
    )
    threshold_on: float | None = Field(
        default=None, gt=0, lt=1, title="Alarm threshold", description="Overrides the default."
    )
    threshold_off: float | None = Field(
        default=None, gt=0, lt=1, title="Clear threshold", description="Overrides the default."
    )


class AnomalyDetectionOptions(PluginOptions):
    """Options of the ``anomaly_detection`` plugin."""

    max_series: int = Field(default=10000, ge=1, title="Series cap", description="Most series tracked at once.")
    on_series_cap: Literal["ignore_new", "evict_idle"] = Field(
        default="ignore_new",
        title="Policy at the cap",
        description="`ignore_new`: new series are counted and ignored; `evict_idle`: the series seen least "
        "recently is forgotten (its learned state persisted) to make room.",
    )
    learning_samples: int = Field(
        default=300, ge=0, title="Learning period", description="Samples a series must have before it can alarm."
    )
    threshold_on: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        title="Alarm threshold",
        description="Score above which an anomaly starts. 0.5, the evaluated operating point, means: more "
        "surprising than anything this series has shown (recently); 0.6 needs 1.5 times that.",
    )
    threshold_off: float = Field(
        default=0.45, gt=0, lt=1, title="Clear threshold", description="Score below which an active anomaly ends."
    )
    clear_after: int = Field(
        default=3,
        ge=1,
        title="Samples to clear",
        description="Consecutive samples below `threshold_off` that end an anomaly.",
    )
    overrides: list[SeriesOverride] = Field(
        default_factory=list, title="Per-series overrides", description="First matching glob wins."
    )
    score_stream: bool = Field(
        default=False, title="Score stream", description="Publish every score as telemetry (QoS0)."
    )
    score_interval_s: float = Field(
        default=1.0,
        ge=0,
        title="Score stream rate limit",
        description="Least seconds between two scores of one series.",
    )
    state_interval_s: float = Field(
        default=10.0,
        ge=0,
        title="State rate limit",
        description="Least seconds between two retained states of one series.",
    )
    persist_interval_s: float = Field(
        default=300.0, gt=0, title="Persistence interval", description="Seconds between writes of learned state."
    )
    model: str | None = Field(
        default=None,
        title="Forecaster model",
        description="Name of a model in the config's `models:` section (the shipped one is "
        "`pkg://plugins.anomaly_detection/models/anomaly_forecaster_int8.tflite`); none: statistics only.",
    )
    summary_top: int = Field(default=20, ge=0, title="Summary size", description="Series listed with their max score.")

    @model_validator(mode="after")
    def _hysteresis(self) -> AnomalyDetectionOptions:
        if self.threshold_off > self.threshold_on:
            raise ValueError("threshold_off must not exceed threshold_on")
        return self


@dataclass
class SeriesSlot:
    """One tracked series: its detector, its alarm state and output rate limits."""

    detector: SeriesDetector
    threshold_on: float
    threshold_off: float
    active: bool = False
    started_at: float = 0.0
    peak: float = 0.0
    below: int = 0
    last_score_at: float = -math.inf
    last_state_at: float = -math.inf
    interval_max: float = 0.0
    last_seen: float = 0.0
    dirty: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class AnomalyDetectionPlugin(Plugin[AnomalyDetectionOptions]):
    """Scores every numeric channel online and raises anomaly start/end events."""

    name = "anomaly_detection"
    options_model = AnomalyDetectionOptions
    input_kind = "readings"

    def __init__(self, options: AnomalyDetectionOptions, context: PluginContext) -> None:
        super().__init__(options, context)
        self.log = context.logger or logger
        self._model: Any = None
        self._forecaster: ModelForecaster | None = None
        if options.model:
            self._model = context.models.get(options.model)
            self._forecaster = ModelForecaster(self._model)
        self._series: OrderedDict[str, SeriesSlot] = OrderedDict()
        self._ignored: set[str] = set()
        self._dropped_new = 0
        self._samples = 0
        self._started = 0
        self._stale = 0
        self._last_persist = context.clock()
        self._restore()

    # --- series ----------------------------------------------------------------------------------

    def _override(self, series: str) -> SeriesOverride | None:
        for o in self.options.overrides:
            if fnmatch.fnmatchcase(series, o.match):
                return o
        return None

    def _new_slot(self, series: str) -> SeriesSlot | None:
        o = self._override(series)
        if o is not None and o.enabled is False:
            return None
        learning = o.learning_samples if o and o.learning_samples is not None else self.options.learning_samples
        config = DetectorConfig(learning_samples=learning, use_model=self._forecaster is not None)
        on = o.threshold_on if o and o.threshold_on is not None else self.options.threshold_on
        off = o.threshold_off if o and o.threshold_off is not None else self.options.threshold_off
        return SeriesSlot(SeriesDetector(config, self._forecaster), on, min(off, on))

    def _slot(self, series: str) -> SeriesSlot | None:
        slot = self._series.get(series)
        if slot is not None:
            self._series.move_to_end(series)
            return slot
        if series in self._ignored:
            return None
        if len(self._series) >= self.options.max_series:
            if self.options.on_series_cap == "ignore_new":
                self._dropped_new += 1
                if self._dropped_new == 1:
                    self.log.warning("series cap %d reached; new series are ignored", self.options.max_series)
                return None
            old_id, old = self._series.popitem(last=False)
            self._persist_one(old_id, old)
        slot = self._new_slot(series)
        if slot is None:
            self._ignored.add(series)
            return None
        stored = self.context.state.get(STATE_PREFIX + series)
        if stored is not None:
            self._load_slot(slot, stored)
        self._series[series] = slot
        return slot

    # --- processing ----------------------------------------------------------------------------------

    def process(self, message: InputMessage) -> Iterable[Output]:
        if not isinstance(message, ReadingBatch):
            return []
        outputs: list[Output] = []
        for reading in message.readings:
            for channel, value in reading.values.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                self._score(f"{reading.source}/{channel}", reading.ts, float(value), outputs)
        now = self.context.clock()
        if now - self._last_persist >= self.options.persist_interval_s:
            self.persist()
        return outputs

    def _score(self, series: str, ts: float, value: float, outputs: list[Output]) -> None:
        slot = self._slot(series)
        if slot is None:
            return
        last = slot.detector.last_ts
        if last is not None and ts <= last:
            # A redelivered (QoS1) or late reading: the detector only moves forward in time.
            self._stale += 1
            return
        self._samples += 1
        result = slot.detector.update(ts, value)
        slot.last_seen = ts
        slot.dirty = True
        score = result.score
        slot.interval_max = max(slot.interval_max, score)
        detail = {
            "series": series,
            "score": round(score, 4),
            "value": value,
            "expected_low": _finite(result.expected_low),
            "expected_high": _finite(result.expected_high),
            "signal": result.signal or None,
        }
        if not slot.active and score > slot.threshold_on and not result.learning:
            slot.active, slot.started_at, slot.peak, slot.below = True, ts, score, 0
            self._started += 1
            outputs.append(Event("anomaly_start", detail, ts=ts))
        elif slot.active:
            slot.peak = max(slot.peak, score)
            slot.below = slot.below + 1 if score < slot.threshold_off else 0
            if slot.below >= self.options.clear_after:
                slot.active = False
                outputs.append(
                    Event(
                        "anomaly_end",
                        {**detail, "peak": round(slot.peak, 4), "duration_s": ts - slot.started_at},
                        ts=ts,
                    )
                )
        if self.options.score_stream and ts - slot.last_score_at >= self.options.score_interval_s:
            slot.last_score_at = ts
            outputs.append(Telemetry("score", {**detail, "ts": ts}))
        if ts - slot.last_state_at >= self.options.state_interval_s:
            slot.last_state_at = ts
            outputs.append(State({**detail, "ts": ts, "active": slot.active, "learning": result.learning}, key=series))

    def summarize(self, start: float, end: float) -> Iterable[Output]:
        top = sorted(self._series.items(), key=lambda kv: kv[1].interval_max, reverse=True)[: self.options.summary_top]
        data = {
            "samples": self._samples,
            "series": len(self._series),
            "anomalies_started": self._started,
            "active": sorted(k for k, s in self._series.items() if s.active),
            "max_score": {k: round(s.interval_max, 4) for k, s in top},
            "series_ignored_at_cap": self._dropped_new,
            "stale_readings": self._stale,
        }
        self._samples = self._started = self._stale = 0
        for s in self._series.values():
            s.interval_max = 0.0
        return [Summary(data, start, end)]

    def model_info(self) -> ModelInfoLike | None:
        return getattr(self._model, "info", None)

    # --- persistence --------------------------------------------------------------------------------

    def _slot_state(self, slot: SeriesSlot) -> dict[str, Any]:
        return {
            "detector": slot.detector.to_state(),
            "active": slot.active,
            "started_at": slot.started_at,
            "peak": slot.peak,
        }

    def _load_slot(self, slot: SeriesSlot, stored: dict[str, Any]) -> None:
        try:
            slot.detector.load_state(stored["detector"])
            slot.active = bool(stored.get("active", False))
            slot.started_at = float(stored.get("started_at", 0.0))
            slot.peak = float(stored.get("peak", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            self.log.warning("stored state not usable (%s); series starts afresh", exc)

    def _persist_one(self, series: str, slot: SeriesSlot) -> None:
        self.context.state.put(STATE_PREFIX + series, self._slot_state(slot))
        slot.dirty = False

    def persist(self) -> None:
        """Write the learned state of every series that changed since the last write."""
        dirty = {STATE_PREFIX + k: self._slot_state(s) for k, s in self._series.items() if s.dirty}
        if dirty:
            put_many = getattr(self.context.state, "put_many", None)
            if put_many is not None:
                put_many(dirty)
            else:
                for k, v in dirty.items():
                    self.context.state.put(k, v)
            for s in self._series.values():
                s.dirty = False
        self._last_persist = self.context.clock()

    def _restore(self) -> None:
        restored = 0
        for key, stored in self.context.state.items(STATE_PREFIX):
            if len(self._series) >= self.options.max_series:
                break
            series = key[len(STATE_PREFIX) :]
            slot = self._new_slot(series)
            if slot is None:
                continue
            self._load_slot(slot, stored)
            self._series[series] = slot
            restored += 1
        if restored:
            self.log.info("restored learned state of %d series", restored)

    def close(self) -> None:
        self.persist()


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
