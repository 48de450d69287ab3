"""The online detector on synthetic series: injected anomalies are flagged, a clean periodic series is not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from plugins.anomaly_detection.detector import DetectorConfig, SeriesDetector
from plugins.anomaly_detection.forecaster import default_model_path, load_default_forecaster

STEP_S = 300.0  # five-minute samples
DAY = int(86400 / STEP_S)  # 288 samples per day
LEARN = 2 * DAY
ALARM = 0.5  # a score above 0.5 means "more surprising than anything seen so far"


def periodic(n_days: int, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n_days * DAY)
    return 20 + 5 * np.sin(2 * np.pi * t / DAY) + noise * 5 * rng.normal(size=t.size)


def run(values: np.ndarray, use_model: bool = False) -> np.ndarray:
    forecaster = load_default_forecaster() if use_model else None
    det = SeriesDetector(DetectorConfig(learning_samples=LEARN, use_model=use_model), forecaster)
    return np.array([det.update(i * STEP_S, float(v)).score for i, v in enumerate(values)])


def flagged(scores: np.ndarray, start: int, end: int) -> bool:
    return bool(scores[start:end].max() > ALARM)


def test_clean_periodic_series_is_not_flagged() -> None:
    scores = run(periodic(10))
    assert scores[:LEARN].max() == 0.0  # learning period: no score at all
    assert scores[3 * DAY :].max() < ALARM


def test_level_shift_is_flagged() -> None:
    x = periodic(8)
    at = 6 * DAY + 100
    x[at:] += 8.0
    scores = run(x)
    assert flagged(scores, at, at + 5)
    assert scores[3 * DAY : at].max() < ALARM


def test_spike_is_flagged() -> None:
    x = periodic(8)
    at = 6 * DAY + 37
    x[at] += 15.0
    scores = run(x)
    assert flagged(scores, at, at + 1)
    assert scores[3 * DAY : at].max() < ALARM


def test_variance_change_is_flagged() -> None:
    x = periodic(8)
    at = 6 * DAY
    x[at:] += np.random.default_rng(1).normal(0, 3.0, x.size - at)
    scores = run(x)
    assert flagged(scores, at, at + DAY // 4)


def test_broken_periodic_pattern_is_flagged() -> None:
    x = periodic(8)
    at = 6 * DAY + DAY // 4
    x[at : at + DAY // 2] = x[at]  # the daily cycle stops: flat line for half a day
    scores = run(x)
    assert flagged(scores, at, at + DAY // 2)
    assert scores[3 * DAY : at].max() < ALARM


def test_gap_and_irregular_timestamps_do_not_alarm() -> None:
    x = periodic(8)
    rng = np.random.default_rng(3)
    ts = np.cumsum(rng.uniform(0.5, 1.5, x.size) * STEP_S)
    ts[5 * DAY :] += 6 * 3600  # six hours without data
    det = SeriesDetector(DetectorConfig(learning_samples=LEARN, use_model=False))
    # The value follows the clock, so the gap is a gap, not a change.
    vals = 20 + 5 * np.sin(2 * np.pi * ts / 86400) + 0.25 * rng.normal(size=x.size)
    scores = np.array([det.update(float(t), float(v)).score for t, v in zip(ts, vals)])
    assert scores[3 * DAY :].max() < ALARM


def test_state_round_trip_gives_identical_scores() -> None:
    x = periodic(6)
    a = SeriesDetector(DetectorConfig(learning_samples=LEARN, use_model=False))
    for i, v in enumerate(x[: 4 * DAY]):
        a.update(i * STEP_S, float(v))
    import json

    b = SeriesDetector(DetectorConfig(learning_samples=LEARN, use_model=False))
    b.load_state(json.loads(json.dumps(a.to_state())))
    for i in range(4 * DAY, 6 * DAY):
        ra, rb = a.update(i * STEP_S, float(x[i])), b.update(i * STEP_S, float(x[i]))
        assert ra.score == pytest.approx(rb.score)


def test_non_finite_values_are_skipped() -> None:
    det = SeriesDetector(DetectorConfig(learning_samples=0, use_model=False))
    det.update(0.0, 1.0)
    out = det.update(1.0, math.nan)
    assert out.score == 0.0 and det.n == 1


def test_model_component_runs_through_the_real_int8_model() -> None:
    if not default_model_path().exists():
        pytest.skip("shipped forecaster model not built")
    x = periodic(8)
    at = 6 * DAY + 37
    x[at] += 15.0
    scores = run(x, use_model=True)
    assert flagged(scores, at, at + 1)
    assert scores[3 * DAY : at].max() < ALARM


def test_refractory_damps_until_the_excursion_is_over() -> None:
    from plugins.anomaly_detection.detector import Refractory

    r = Refractory(length=3, damping=0.1, rearm=0.9)
    assert r.filter_one(1.5) == 1.5  # alarm
    # still high after the minimum length: stays damped until the ratio falls below 0.9
    assert [round(r.filter_one(x), 3) for x in (1.2, 1.3, 1.1, 1.05)] == [0.12, 0.13, 0.11, 0.105]
    assert r.filter_one(0.5) == 0.5  # re-armed
    assert r.filter_one(1.4) == 1.4  # a new incident alarms again


def test_excursion_under_way_when_learning_ends_is_held() -> None:
    x = periodic(8)
    x[LEARN - 30 : LEARN + 30] += np.linspace(0, 12, 60)  # a climb that began during learning

    def first_scores(hold: bool) -> np.ndarray:
        det = SeriesDetector(DetectorConfig(learning_samples=LEARN, use_model=False, hold_at_start=hold))
        return np.array([det.update(i * STEP_S, float(v)).score for i, v in enumerate(x[: LEARN + 10])])

    assert first_scores(hold=False)[LEARN:].max() > ALARM  # without the hold: an alarm at once
    assert first_scores(hold=True)[LEARN:].max() < ALARM
