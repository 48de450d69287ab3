"""The ``anomaly_detection`` plugin: events with hysteresis, state, summaries, caps, overrides, persistence."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.inference import ModelRegistry
from gateway.messages import Event, Reading, ReadingBatch, State, Summary, Telemetry
from gateway.plugin import PluginContext
from gateway.statestore import StateStore
from plugins.anomaly_detection import AnomalyDetectionPlugin
from plugins.anomaly_detection.forecaster import default_model_path, shipped_model_spec
from plugins.anomaly_detection.plugin import AnomalyDetectionOptions
from plugins.anomaly_detection.simulator import SensorSimulator

STEP = 60.0
DAY = 1440  # samples of one minute


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _models(tmp_path: Path) -> ModelRegistry:
    """The gateway's engine with the shipped forecaster declared the way a config declares it."""
    return ModelRegistry({"anomaly_forecaster": shipped_model_spec()}, tmp_path)


def make(tmp_path: Path, clock: _Clock | None = None, **options: Any) -> tuple[AnomalyDetectionPlugin, StateStore]:
    store = StateStore(tmp_path / "state.db", "anomalies")
    ctx = PluginContext(
        pipeline="anomalies",
        gateway_id="gw-test",
        logger=logging.getLogger("test"),
        clock=clock or _Clock(),
        data_dir=tmp_path,
        models=_models(tmp_path),
        state=store,
    )
    opts = AnomalyDetectionOptions(**{"learning_samples": 400, **options})  # over one 300-sample cycle
    return AnomalyDetectionPlugin(opts, ctx), store


def value_at(i: int) -> float:
    return 20 + 5 * math.sin(2 * math.pi * i / 300) + 0.1 * math.sin(i * 1.7)


def batch(i: int, values: dict[str, float], source: str = "pump-1") -> ReadingBatch:
    return ReadingBatch("sensors/pump-1", i * STEP, (Reading(i * STEP, source, values),))


def feed(plugin: AnomalyDetectionPlugin, start: int, end: int, spike_at: int | None = None) -> list[Any]:
    outs: list[Any] = []
    for i in range(start, end):
        v = value_at(i) + (30.0 if i == spike_at else 0.0)
        outs.extend(plugin.process(batch(i, {"temp": v, "flag": True})))  # booleans are not series
    return outs


def events(outs: list[Any], kind: str) -> list[Event]:
    return [o for o in outs if isinstance(o, Event) and o.type == kind]


def test_spike_raises_one_start_and_one_end_event(tmp_path: Path) -> None:
    plugin, _ = make(tmp_path)
    outs = feed(plugin, 0, 1500, spike_at=1200)
    starts, ends = events(outs, "anomaly_start"), events(outs, "anomaly_end")
    assert len(starts) == 1 and len(ends) == 1
    start = starts[0]
    assert start.ts == 1200 * STEP
    assert start.data["series"] == "pump-1/temp"
    assert start.data["value"] == pytest.approx(value_at(1200) + 30)
    assert start.data["expected_low"] < value_at(1200) < start.data["expected_high"]
    assert ends[0].ts is not None and ends[0].ts > 1200 * STEP
    assert ends[0].data["peak"] >= start.data["score"]
    # booleans are not series
    assert all(not isinstance(o, State) or o.key == "pump-1/temp" for o in outs)


def test_no_event_during_learning(tmp_path: Path) -> None:
    plugin, _ = make(tmp_path, learning_samples=1000)
    outs = feed(plugin, 0, 600, spike_at=500)
    assert events(outs, "anomaly_start") == []


def test_state_is_rate_limited_and_score_stream_optional(tmp_path: Path) -> None:
    plugin, _ = make(tmp_path, state_interval_s=600, score_stream=True, score_interval_s=120)
    outs = feed(plugin, 0, 100)
    states = [o for o in outs if isinstance(o, State)]
    scores = [o for o in outs if isinstance(o, Telemetry)]
    assert len(states) == 10  # one per 10 samples of 60 s
    assert len(scores) == 50 and all(o.channel == "score" for o in scores)
    plugin2, _ = make(tmp_path / "b")
    assert not any(isinstance(o, Telemetry) for o in feed(plugin2, 0, 50))


def test_summary_counts_and_resets(tmp_path: Path) -> None:
    plugin, _ = make(tmp_path)
    feed(plugin, 0, 1300, spike_at=1200)
    (summary,) = plugin.summarize(0.0, 1300 * STEP)
    assert isinstance(summary, Summary)
    assert summary.data["samples"] == 1300 and summary.data["anomalies_started"] == 1
    assert summary.data["max_score"]["pump-1/temp"] > 0.5
    (again,) = plugin.summarize(1300 * STEP, 1400 * STEP)
    assert again.data["samples"] == 0 and again.data["anomalies_started"] == 0


def test_series_cap_ignores_new_or_evicts_idle(tmp_path: Path) -> None:
    plugin, _ = make(tmp_path, max_series=2)
    plugin.process(batch(0, {"a": 1.0, "b": 2.0, "c": 3.0}))
    (summary,) = plugin.summarize(0, 1)
    assert summary.data["series"] == 2 and summary.data["series_ignored_at_cap"] == 1
    evicting, store = make(tmp_path / "e", max_series=2, on_series_cap="evict_idle")
    evicting.process(batch(0, {"a": 1.0, "b": 2.0}))
    evicting.process(batch(1, {"c": 3.0}))
    (summary,) = evicting.summarize(0, 1)
    assert summary.data["series"] == 2
    assert store.get("series/pump-1/a") is not None  # the evicted series keeps what it learned


def test_overrides_by_glob(tmp_path: Path) -> None:
    plugin, _ = make(
        tmp_path,
        overrides=[{"match": "pump-*/noisy", "enabled": False}, {"match": "*/temp", "learning_samples": 5000}],
    )
    outs: list[Any] = []
    for i in range(1300):
        spike = 30.0 if i == 1200 else 0.0
        outs += plugin.process(batch(i, {"temp": value_at(i) + spike, "noisy": value_at(i) + spike}))
    assert events(outs, "anomaly_start") == []  # temp still learning, noisy ignored
    (summary,) = plugin.summarize(0, 1)
    assert summary.data["series"] == 1


def test_thresholds_must_have_hysteresis() -> None:
    with pytest.raises(ValidationError):
        AnomalyDetectionOptions(threshold_on=0.5, threshold_off=0.6)
    with pytest.raises(ValidationError):
        AnomalyDetectionOptions(unknown=1)  # type: ignore[call-arg]


def test_restart_restores_learned_state(tmp_path: Path) -> None:
    clock = _Clock()
    plugin, store = make(tmp_path, clock=clock)
    feed(plugin, 0, 1100)
    plugin.close()
    stored = store.get("series/pump-1/temp")
    assert stored["detector"]["n"] == 1100
    json.dumps(stored)
    restarted, _ = make(tmp_path, clock=clock)  # same database file
    outs = feed(restarted, 1100, 1250, spike_at=1200)  # already past learning: alarms right away
    assert [e.ts for e in events(outs, "anomaly_start")] == [1200 * STEP]


def test_periodic_persistence(tmp_path: Path) -> None:
    clock = _Clock()
    plugin, store = make(tmp_path, clock=clock, persist_interval_s=100)
    feed(plugin, 0, 10)
    assert store.get("series/pump-1/temp") is None
    clock.now = 150
    feed(plugin, 10, 11)
    assert store.get("series/pump-1/temp")["detector"]["n"] == 11


def test_model_component_through_named_model(tmp_path: Path) -> None:
    if not default_model_path().exists():
        pytest.skip("shipped forecaster model not built")
    plugin, _ = make(tmp_path, model="anomaly_forecaster")
    outs = feed(plugin, 0, 1300, spike_at=1200)
    assert [e.ts for e in events(outs, "anomaly_start")] == [1200 * STEP]
    info = plugin.model_info()
    assert info is not None and info.name == "anomaly_forecaster"
    assert plugin._model.stats().count >= 1300 - 32  # every sample past the first window ran the model


def test_simulator_series_and_injected_anomalies(tmp_path: Path) -> None:
    sim = SensorSimulator(machines=2, period_s=1.0, anomaly_probability=0.001, cycle_s=300.0, seed=4, quiet_s=900.0)
    plugin, _ = make(tmp_path, learning_samples=600)
    starts: list[Event] = []
    for k in range(3000):
        for suffix, payload in sim.messages(1_000_000.0 + k):
            msg = json.loads(payload)
            assert suffix == msg["source"] and set(msg["values"]) == {"temperature", "flow", "power"}
            starts += events(
                list(
                    plugin.process(ReadingBatch(suffix, msg["ts"], (Reading(msg["ts"], msg["source"], msg["values"]),)))
                ),
                "anomaly_start",
            )
    late = [a for a in sim.injected if a.start >= 1_000_000.0 + 900]
    assert late, "the seed injects anomalies after learning"
    found = [
        a for a in late if any(e.data["series"] == a.series and a.start <= (e.ts or 0.0) <= a.end + 30 for e in starts)
    ]
    assert len(found) >= len(late) * 0.6
    assert plugin.name == "anomaly_detection"


def test_duplicate_and_late_readings_are_dropped_and_counted(tmp_path: Path) -> None:
    plugin, store = make(tmp_path)
    feed(plugin, 0, 10)
    feed(plugin, 9, 10)  # redelivered
    feed(plugin, 3, 4)  # late
    (summary,) = plugin.summarize(0, 1)
    assert summary.data["samples"] == 10 and summary.data["stale_readings"] == 2
    plugin.close()
    assert store.get("series/pump-1/temp")["detector"]["n"] == 10
