"""Windowing rules: sample and time windows, overlap, late/duplicate readings, gaps, mixed rates."""

from __future__ import annotations

import numpy as np

from plugins.predictive_maintenance.windowing import MachineWindow, WindowSpec


def make(size: float = 4, hop: float = 2, by: str = "samples", max_gap_s: float = 10.0) -> MachineWindow:
    return MachineWindow("m1", ("a", "b"), WindowSpec(size, hop, by, max_gap_s))


def test_sample_windows_with_overlap() -> None:
    w = make(size=4, hop=2)
    windows = w.push_many([(float(t), {"a": t, "b": -t}) for t in range(1, 11)])
    assert [int(x.end_ts) for x in windows] == [4, 6, 8, 10]
    np.testing.assert_array_equal(windows[1].samples[0], [3, 4, 5, 6])  # overlaps the first by 2
    np.testing.assert_array_equal(windows[1].samples[1], [-3, -4, -5, -6])
    assert windows[0].sample_rate_hz == 1.0


def test_late_and_duplicate_readings_are_dropped_and_counted() -> None:
    w = make(size=3, hop=1)
    w.push_many([(1.0, {"a": 1, "b": 1}), (2.0, {"a": 2, "b": 2})])
    assert w.push(2.0, {"a": 99, "b": 99}) == []  # duplicate (QoS1 redelivery)
    assert w.push(1.5, {"a": 99, "b": 99}) == []  # late
    out = w.push(3.0, {"a": 3, "b": 3})
    np.testing.assert_array_equal(out[0].samples[0], [1, 2, 3])
    assert (w.counters.duplicates, w.counters.late, w.counters.accepted) == (1, 1, 3)


def test_gap_restarts_the_window() -> None:
    w = make(size=3, hop=1, max_gap_s=5)
    w.push_many([(float(t), {"a": t, "b": t}) for t in range(1, 4)])
    out = w.push_many([(100.0 + t, {"a": t, "b": t}) for t in range(3)])
    assert w.counters.gaps == 1
    assert len(out) == 1 and out[0].start_ts == 100.0  # never spans the gap


def test_missing_channels_hold_their_last_value_and_wait_for_all() -> None:
    w = make(size=2, hop=1)
    assert w.push(1.0, {"a": 1.0}) == []  # b never seen yet
    assert w.counters.incomplete == 1
    w.push(2.0, {"b": 20.0})
    out = w.push(3.0, {"a": 3.0})  # slow channel b held at 20
    np.testing.assert_array_equal(out[0].samples, [[1.0, 3.0], [20.0, 20.0]])


def test_non_numeric_and_nan_values_count_as_missing() -> None:
    w = make(size=2, hop=1)
    w.push(1.0, {"a": 1.0, "b": 2.0})
    out = w.push(2.0, {"a": float("nan"), "b": "x"})  # type: ignore[dict-item]
    np.testing.assert_array_equal(out[0].samples, [[1.0, 1.0], [2.0, 2.0]])


def test_time_windows_at_different_rates() -> None:
    w = make(size=10.0, hop=5.0, by="time")
    fast = [(i * 0.5, {"a": float(i), "b": 0.0}) for i in range(1, 61)]  # 2 Hz for 30 s
    windows = w.push_many(fast)
    ends = [x.end_ts for x in windows]
    assert ends[0] >= 9.0 and all(b - a >= 5.0 - 1e-9 for a, b in zip(ends, ends[1:]))
    assert all(18 <= x.samples.shape[1] <= 20 for x in windows)  # ~10 s of 2 Hz samples
    assert windows[-1].sample_rate_hz == np.float64(2.0)


def test_memory_is_bounded_by_the_ring() -> None:
    w = make(size=8, hop=1)
    for t in range(10_000):
        w.push(float(t + 1), {"a": 1.0, "b": 2.0})
    assert w._values.shape == (8, 2)


def test_time_window_ring_grows_for_high_rate_signals() -> None:
    w = MachineWindow("m1", ("a",), WindowSpec(2.0, 1.0, "time"), capacity=16)
    fs = 1000.0
    windows = w.push_many([(i / fs, {"a": float(i)}) for i in range(1, 3001)])  # 3 s at 1 kHz
    assert windows, "a 2 s window of 1 kHz data must be emitted"
    assert all(1800 <= x.samples.shape[1] <= 2000 for x in windows)
    assert abs(windows[0].sample_rate_hz - fs) < 1e-6
    np.testing.assert_array_equal(np.diff(windows[-1].samples[0]), 1.0)  # contiguous, in order after growth
