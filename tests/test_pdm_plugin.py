"""The ``predictive_maintenance`` plugin with a hand-built context: learning, alarms, state, restart, model."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from gateway.decode import decode_readings
from gateway.inference import ModelRegistry, ModelSpec
from gateway.messages import Event, RawMessage, Reading, ReadingBatch, State, Summary
from gateway.plugin import PluginContext
from gateway.statestore import StateStore
from plugins.predictive_maintenance import PredictiveMaintenanceOptions, PredictiveMaintenancePlugin
from plugins.predictive_maintenance.features import FeatureSet
from plugins.predictive_maintenance.monitor import MachineMonitor, MonitorSettings
from plugins.predictive_maintenance.scoring import PACKAGE_MODEL_URI, InnovationScorer, TFLiteModel, packaged_model_path
from plugins.predictive_maintenance.simulator import MachineSimulator
from plugins.predictive_maintenance.windowing import WindowSpec

LEARN = 200


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Models:
    """The gateway engine's registry with the shipped int8 forecaster declared as in a config file."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.registry = ModelRegistry({"pdm_forecaster": ModelSpec(path=PACKAGE_MODEL_URI)}, Path.cwd())

    def get(self, name: str) -> Any:
        self.asked.append(name)
        return self.registry.get(name)


def make(
    tmp_path: Path, clock: _Clock | None = None, models: _Models | None = None, **options: Any
) -> tuple[PredictiveMaintenancePlugin, StateStore]:
    store = StateStore(tmp_path / "state.db", "pdm")
    ctx = PluginContext(
        pipeline="pdm",
        gateway_id="gw-test",
        logger=logging.getLogger("test.pdm"),
        clock=clock or _Clock(),
        data_dir=tmp_path,
        models=models or _Models(),
        state=store,
    )
    opts = PredictiveMaintenanceOptions(**{"learning_windows": LEARN, **options})
    return PredictiveMaintenancePlugin(opts, ctx), store


def run(
    plugin: PredictiveMaintenancePlugin,
    sim: MachineSimulator,
    start: int,
    end: int,
    clock: _Clock | None = None,
    faults: dict[int, str] | None = None,
) -> list[Any]:
    """Feed simulator seconds [start, end) through the real JSON decoder; faults: {second: kind|'stop'}."""
    outs: list[Any] = []
    for t in range(start, end):
        action = (faults or {}).get(t)
        if action == "stop":
            sim.stop_faults("pump-1")
        elif action:
            sim.start_fault("pump-1", action)
        now = 1_700_000_000.0 + t
        if clock is not None:
            clock.now = now
        for suffix, payload in sim.messages(now):
            outs.extend(plugin.process(decode_readings(RawMessage(f"plant/{suffix}", payload, 1, False, now))))
    return outs


def events(outs: list[Any], kind: str) -> list[Event]:
    return [o for o in outs if isinstance(o, Event) and o.type == kind]


def test_fault_raises_then_clears_with_onset_and_contributors(tmp_path: Path) -> None:
    plugin, _ = make(tmp_path)
    sim = MachineSimulator(seed=3)
    learning = run(plugin, sim, 0, LEARN + 10)
    assert not events(learning, "alarm_raised")
    states = [o for o in learning if isinstance(o, State)]
    assert states[0].key == "pump-1" and states[0].data["learning"] is True
    assert states[-1].data["learning"] is False and states[-1].data["health"] > 50

    outs = run(plugin, sim, LEARN + 10, LEARN + 200, faults={LEARN + 60: "imbalance", LEARN + 120: "stop"})
    raised, cleared = events(outs, "alarm_raised"), events(outs, "alarm_cleared")
    assert len(raised) == 1 and len(cleared) == 1
    fault_ts = 1_700_000_000.0 + LEARN + 60
    assert raised[0].data["machine"] == "pump-1"
    assert fault_ts <= raised[0].data["onset"] <= fault_ts + 5  # documented: within 5 s + min duration
    assert raised[0].ts is not None and raised[0].ts - fault_ts <= 10
    top = raised[0].data["top_contributors"][0]
    assert top["channel"] in ("accel1_rms", "accel2_rms") and top["exceedance"] > 1
    assert cleared[0].ts is not None and 0 <= cleared[0].ts - (fault_ts + 60) <= 15
    assert cleared[0].data["duration_s"] == pytest.approx(cleared[0].ts - raised[0].data["onset"])


def test_state_has_health_trend_and_rul_and_is_rate_limited(tmp_path: Path) -> None:
    plugin, _ = make(tmp_path, state_interval_s=10)
    outs = run(plugin, MachineSimulator(seed=4), 0, LEARN + 100)
    scored = [o for o in outs if isinstance(o, State) and not o.data["learning"]]
    assert 8 <= len(scored) <= 11  # ~100 s of scoring at one state per 10 s
    last = scored[-1].data
    assert 0 <= last["health"] <= 100 and last["alarm"] is False
    assert {"trend_per_hour", "rul_s", "rul_low_s", "rul_high_s", "top_contributors"} <= set(last)
    assert last["suppressed"] == []  # no alarm yet, so no consequence is suppressed


def test_slow_degradation_gives_a_finite_rul_before_the_alarm(tmp_path: Path) -> None:
    plugin, _ = make(tmp_path, state_interval_s=0, trend_span_s=300)
    sim = MachineSimulator(seed=5)
    run(plugin, sim, 0, LEARN + 10)
    sim.start_fault("pump-1", "bearing", severity=1.0, ramp_s=1200)
    outs = run(plugin, sim, LEARN + 10, LEARN + 400)
    with_rul = [o.data for o in outs if isinstance(o, State) and o.data.get("rul_s") not in (None, 0.0)]
    assert with_rul, "a steadily degrading machine must get a remaining-life estimate"
    sample = with_rul[-1]
    assert sample["trend_per_hour"] < 0
    assert sample["rul_low_s"] <= sample["rul_s"]


def test_summary_reports_health_and_alarm_time_and_resets(tmp_path: Path) -> None:
    plugin, _ = make(tmp_path)
    sim = MachineSimulator(seed=6)
    run(plugin, sim, 0, LEARN + 150, faults={LEARN + 50: "imbalance", LEARN + 100: "stop"})
    (summary,) = plugin.summarize(0.0, 1.0)
    assert isinstance(summary, Summary)
    m = summary.data["machines"]["pump-1"]
    assert summary.data["readings"] == LEARN + 150
    assert m["health_min"] < 50 < m["health_mean"] and m["alarms_raised"] == 1
    assert 40 <= m["alarm_s"] <= 60
    (again,) = plugin.summarize(1.0, 2.0)
    assert again.data["readings"] == 0 and again.data["machines"]["pump-1"].get("windows") is None


def test_restart_keeps_the_learned_baseline(tmp_path: Path) -> None:
    plugin, store = make(tmp_path)
    sim = MachineSimulator(seed=7)
    run(plugin, sim, 0, LEARN + 20)
    plugin.close()
    saved = store.get("machine/pump-1")
    assert "baseline" in saved

    plugin2, _ = make(tmp_path)
    outs = run(plugin2, sim, LEARN + 20, LEARN + 40)
    states = [o for o in outs if isinstance(o, State)]
    assert states and all(not s.data["learning"] for s in states)  # no second learning period


def test_restart_mid_learning_resumes_progress(tmp_path: Path) -> None:
    plugin, _ = make(tmp_path, persist_interval_s=10)
    sim = MachineSimulator(seed=8)
    run(plugin, sim, 0, LEARN // 2)
    plugin.close()
    plugin2, _ = make(tmp_path)
    outs = run(plugin2, sim, LEARN // 2, LEARN // 2 + 20)
    progress = [o.data["learning_progress"] for o in outs if isinstance(o, State)]
    assert progress[0] > 0.45  # carried on from ~half, not from zero


def test_model_component_through_named_model(tmp_path: Path) -> None:
    models = _Models()
    plugin, _ = make(tmp_path, models=models, model="pdm_forecaster")
    assert models.asked == ["pdm_forecaster"]
    outs = run(plugin, MachineSimulator(seed=9), 0, LEARN + 30, faults={LEARN + 10: "imbalance"})
    raised = events(outs, "alarm_raised")
    assert len(raised) == 1
    feats = {c["feature"] for c in raised[0].data["top_contributors"]}
    assert feats <= {"mean", "innovation"}
    assert "innovation" in plugin._machines["pump-1"].monitor.feature_names
    info = plugin.model_info()
    assert info is not None and info.name == "pdm_forecaster"


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_forecaster_scores_a_step_above_noise(variant: str) -> None:
    scorer = InnovationScorer(TFLiteModel(packaged_model_path(f"pdm_forecaster_{variant}.tflite")))
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(0, 0.05, (1, 40)), axis=1) + np.sin(np.arange(40) / 5)[None, :]
    stepped = smooth.copy()
    stepped[0, -1] += 5.0
    assert scorer.score(stepped)[0] > 3 * scorer.score(smooth)[0]
    assert scorer.score(smooth[:, :10])[0] == 0.0  # not enough context yet


def test_machine_and_channel_selection(tmp_path: Path) -> None:
    plugin, _ = make(tmp_path, machines=["pump-1"], channels=["flow", "current"])
    batch = ReadingBatch(
        "plant",
        0.0,
        tuple(
            Reading(float(t), src, {"flow": 1.0, "current": 2.0, "other": 3.0})
            for t in range(3)
            for src in ("pump-1", "x")
        ),
    )
    plugin.process(batch)
    assert list(plugin._machines) == ["pump-1"]
    assert plugin._machines["pump-1"].monitor.channels == ("flow", "current")
    (summary,) = plugin.summarize(0.0, 1.0)
    assert summary.data["ignored_machines"] == 1


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="clear_above"):
        PredictiveMaintenanceOptions.model_validate({"alarm": {"raise_below": 60, "clear_above": 50}})
    with pytest.raises(ValidationError, match="unknown features"):
        PredictiveMaintenanceOptions.model_validate({"features": {"scalar": ["mean", "bogus"]}})
    with pytest.raises(ValidationError, match="windw"):
        PredictiveMaintenanceOptions.model_validate({"windw": {"size": 3}})  # typo: rejected, not ignored


def test_simulator_messages_single_and_batched_with_fault_start_and_stop() -> None:
    single = MachineSimulator(["a", "b"], seed=1)
    msgs = single.messages(100.0)
    assert [m[0] for m in msgs] == ["a", "b"]
    payload = json.loads(msgs[0][1])
    assert payload["ts"] == 100.0 and payload["source"] == "a" and len(payload["values"]) == 8

    batched = MachineSimulator(["a"], seed=1, batch=3)
    assert batched.messages(1.0) == [] and batched.messages(2.0) == []
    (msg,) = batched.messages(3.0)
    body = json.loads(msg[1])
    assert body["source"] == "a" and [r["ts"] for r in body["readings"]] == [1.0, 2.0, 3.0]

    rig = single.rigs["a"]
    normal = np.mean([rig.step(1.0)["accel1_rms"] for _ in range(30)])
    single.start_fault("a", "imbalance")
    faulty = np.mean([rig.step(1.0)["accel1_rms"] for _ in range(30)])
    single.stop_faults("a")
    after = np.mean([rig.step(1.0)["accel1_rms"] for _ in range(30)])
    assert faulty > 2 * normal and after == pytest.approx(normal, rel=0.2)
    with pytest.raises(ValueError, match="unknown fault"):
        single.start_fault("a", "gremlins")


def test_raw_vibration_with_spectral_features_flags_a_bearing_defect() -> None:
    """1 kHz accelerometer, time windows, kurtosis and envelope band around a 37 Hz defect frequency."""
    fs, defect_hz = 1000.0, 37.0
    settings = MonitorSettings(
        window=WindowSpec(size=1.0, hop=0.5, by="time"),
        features=FeatureSet(scalar=("rms", "kurtosis"), envelope_bands=((30.0, 45.0),)),
        learning_windows=20,
    )
    monitor = MachineMonitor("fan-1", ("accel",), settings)
    rng = np.random.default_rng(0)
    results = []
    for i in range(int(30 * fs)):  # 30 s: 12 s learning, defect from 20 s on
        t = i / fs
        x = 0.5 * np.sin(2 * np.pi * 50.0 * t) + rng.normal(0.0, 0.2)
        if t >= 20.0 and (t * defect_hz) % 1.0 < 0.02:  # short impacts once per defect period
            x += 3.0 * rng.choice([-1.0, 1.0])
        results.extend(monitor.push(t, {"accel": x}))
    before = [r for r in results if r.health is not None and r.ts < 20.0]
    after = [r for r in results if r.health is not None and r.ts > 21.5]
    assert before and all(not r.alarm_active for r in before)
    assert after and all(r.alarm_active for r in after)
    assert {c.feature for c in monitor.contributors()[:2]} & {"kurtosis", "env_30_45"}
