"""Health index, alarm hysteresis and minimum duration, degradation trend and RUL, learning-period baseline."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.predictive_maintenance.baseline import FeatureBaseline
from plugins.predictive_maintenance.health import AlarmTracker, DegradationTrend, health_from_score


def test_health_index_scale() -> None:
    assert health_from_score(0.0, 2.0) == 100.0
    assert health_from_score(2.0, 2.0) == pytest.approx(50.0)
    assert health_from_score(4.0, 2.0) == pytest.approx(100 * 2**-4)
    assert health_from_score(float("nan"), 2.0) == 0.0


def test_alarm_needs_minimum_duration_and_clears_with_hysteresis() -> None:
    a = AlarmTracker(alarm_below=50, clear_above=60, min_duration_s=3)
    assert a.update(0, 40) is None and a.update(2, 40) is None  # not long enough yet
    raised = a.update(3, 40)
    assert raised is not None and raised.raised and raised.onset == 0
    assert a.update(4, 55) is None  # between levels: stays raised
    assert a.update(5, 70) is None and a.update(7, 70) is None
    assert a.update(7.5, 55) is None  # dip resets the clearing timer
    assert a.update(8, 70) is None
    cleared = a.update(11, 70)
    assert cleared is not None and not cleared.raised and cleared.onset == 0 and not a.active


def test_alarm_state_round_trip() -> None:
    a = AlarmTracker()
    a.update(5.0, 10.0)
    b = AlarmTracker()
    b.restore(a.to_state())
    assert b.active and b.onset == 5.0


def test_rul_of_a_linear_decline_with_band() -> None:
    trend = DegradationTrend(span_s=1000, alarm_level=50)
    rng = np.random.default_rng(0)
    for t in range(0, 600, 10):
        trend.update(float(t), 100.0 - 0.05 * t + rng.normal(0, 0.5))  # -0.05 per s, 70 at t=400... 70.5 at 590
    est = trend.estimate()
    assert est.slope_per_hour == pytest.approx(-180.0, rel=0.05)
    # health at t=590 is ~70.5: 20.5 points above the alarm level at 0.05/s -> ~410 s
    assert est.rul_s == pytest.approx(410.0, rel=0.1)
    assert est.rul_s is not None and est.rul_low_s is not None and est.rul_high_s is not None
    assert est.rul_low_s < est.rul_s < est.rul_high_s


def test_rul_is_none_when_not_degrading() -> None:
    trend = DegradationTrend()
    for t in range(50):
        trend.update(float(t), 95.0 + 0.01 * t)
    assert trend.estimate().rul_s is None


def test_baseline_widens_the_band_of_wandering_channels_only() -> None:
    rng = np.random.default_rng(1)
    n = 400
    noise = rng.normal(0, 1.0, n)
    walk = np.cumsum(rng.normal(0, 0.2, n))
    b = FeatureBaseline(["noise", "walk"])
    for i in range(n):
        b.learn_one(np.array([noise[i], walk[i]]), float(i))
    b.fit()
    assert b.drift_exponent is not None and b.scale is not None
    assert b.drift_exponent[0] < 0.2 and b.drift_exponent[1] > 0.3
    assert b.scale[0] == pytest.approx(1.0, rel=0.2)  # white noise keeps its own sigma
    # random walk: spread after the 2400 s horizon ~ 0.2 * sqrt(2400) ~ 10, far above its 400 s spread
    assert b.scale[1] > 5.0
    assert b.score_one(np.array([0.0, walk[-1]])).max() < 1.0
    assert b.score_one(np.array([10.0, walk[-1]]))[0] > 3.0
    restored = FeatureBaseline.from_state(b.to_state())
    np.testing.assert_allclose(restored.score_one(np.array([3.0, 1.0])), b.score_one(np.array([3.0, 1.0])))


def test_baseline_needs_enough_windows() -> None:
    b = FeatureBaseline(["x"])
    b.learn_one(np.array([1.0]), 0.0)
    with pytest.raises(ValueError, match="at least 10"):
        b.fit()


def test_shift_detector_accumulates_a_persistent_shift_and_drains_after_it() -> None:
    from plugins.predictive_maintenance.baseline import ShiftAccumulator

    cusum = ShiftAccumulator(k=2.0, h=20.0, cap=1.2)
    e = np.array([2.5, -2.5, 1.9, 0.0])  # up by k + 0.5, down by k + 0.5, under k, nothing
    for _ in range(39):
        score = cusum.update(e)
    assert score == pytest.approx([0.975, 0.975, 0.0, 0.0])  # 39 * 0.5 / 20
    score = cusum.update(e)
    assert score[:2] == pytest.approx([1.0, 1.0])  # h / delta = 40 windows to reach the alarm level
    for _ in range(100):
        score = cusum.update(e)
    assert score[:2] == pytest.approx([1.2, 1.2])  # capped
    score = cusum.update(np.zeros(4))
    assert score[:2] == pytest.approx([1.1, 1.1])  # drains by k per window once the shift is gone
