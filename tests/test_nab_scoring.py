"""NAB scoring on hand-made cases whose score can be worked out by hand."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from plugins.anomaly_detection.nab import (
    DEFAULT_PROFILES,
    CorpusScorer,
    SeriesEntry,
    load_corpus,
    probationary_length,
    scaled_sigmoid,
    score_by_threshold,
    sweep_rows,
    write_results,
)

NAB_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
STANDARD = DEFAULT_PROFILES["standard"]

# 1000 rows: probation = 150 rows; one window on rows 400..499 (width 100).
N = 1000
WINDOW = (400, 499)


def _scorer(scores: np.ndarray) -> CorpusScorer:
    scorer = CorpusScorer()
    scorer.add("s", scores, [WINDOW])
    return scorer


def test_scaled_sigmoid_anchor_points() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)  # 0.98661
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_probationary_period_is_15_percent_capped_at_750() -> None:
    assert probationary_length(1000) == 150
    assert probationary_length(4032) == 604
    assert probationary_length(22695) == 750


def test_perfect_detector_scores_100_and_null_scores_0() -> None:
    perfect = np.zeros(N)
    perfect[WINDOW[0]] = 1.0
    assert _scorer(perfect).result("standard").score == pytest.approx(100.0)
    null = _scorer(np.zeros(N)).result("standard")
    assert null.score == pytest.approx(0.0)
    assert null.null == pytest.approx(-1.0) and null.perfect == pytest.approx(1.0)


def test_one_early_true_positive_earns_the_sigmoid_of_its_position() -> None:
    scores = np.zeros(N)
    scores[450] = 1.0  # 50 rows before the right edge: position -(499 - 450 + 1) / 100 = -0.5
    result = _scorer(scores).result("standard")
    expected_raw = scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0)  # 0.84828 / 0.98661 = 0.8598
    assert result.raw == pytest.approx(expected_raw)
    assert result.score == pytest.approx(100 * (expected_raw + 1) / 2)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    scores = np.zeros(N)
    scores[[450, 460, 498]] = 1.0
    assert _scorer(scores).result("standard").raw == pytest.approx(scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0))


def test_one_late_false_positive_costs_fp_weight_times_sigmoid_past_the_window() -> None:
    scores = np.zeros(N)
    scores[WINDOW[0]] = 1.0
    scores[549] = 1.0  # 50 rows past the right edge: position 50 / (100 - 1)
    result = _scorer(scores).result("standard")
    fp = 0.11 * scaled_sigmoid(50 / 99)
    assert fp < 0
    assert result.raw == pytest.approx(1.0 + fp)
    # A false positive long after (3 widths or more) costs the full fp weight; one before any window too.
    rows = sweep_rows(N, [WINDOW], STANDARD)
    assert rows.sweep_score[900] == pytest.approx(-0.11)
    assert rows.sweep_score[200] == pytest.approx(-0.11)


def test_detections_in_the_probationary_period_are_ignored() -> None:
    scores = np.zeros(N)
    scores[:150] = 1.0
    scores[WINDOW[0]] = 0.9
    result = _scorer(scores).result("standard")
    assert result.score == pytest.approx(100.0)


def test_one_threshold_is_chosen_for_the_whole_corpus() -> None:
    a = np.zeros(N)
    a[400] = 0.9  # a hit at 0.9
    b = np.zeros(N)
    b[300] = 0.95  # a false positive above it
    b[400] = 0.5  # a hit only a low threshold finds
    b[700] = 0.6  # a false positive between
    scorer = CorpusScorer()
    scorer.add("a", a, [WINDOW])
    scorer.add("b", b, [WINDOW])
    sweep = score_by_threshold(scorer.entries, STANDARD)
    assert [t.threshold for t in sweep] == [1.1, 0.95, 0.9, 0.6, 0.5, 0.0]
    result = scorer.result("standard")
    # At 0.5 both windows are hit (+2); the false positive before any window costs the full 0.11, the
    # one 201 rows past the window 0.11 x S(201 / 99).
    assert result.threshold == 0.5
    assert result.raw == pytest.approx(2 - 0.11 + 0.11 * scaled_sigmoid(201 / 99))
    assert sum(result.per_series.values()) == pytest.approx(result.raw)


def test_low_fn_profile_doubles_the_cost_of_a_miss() -> None:
    result = _scorer(np.zeros(N)).result("reward_low_FN_rate")
    assert result.null == pytest.approx(-2.0)
    entry = SeriesEntry("s", np.zeros(N), [WINDOW])
    assert score_by_threshold([entry], DEFAULT_PROFILES["reward_low_FN_rate"])[0].score == pytest.approx(-2.0)


def test_results_are_written_in_nab_layout(tmp_path: Path) -> None:
    if not NAB_ROOT.exists():
        pytest.skip("NAB corpus not available at ../shared/data/nab")
    series = [s for s in load_corpus(NAB_ROOT) if s.key.endswith("art_daily_jumpsup.csv")][0]
    path = write_results(tmp_path, "det", series, np.zeros(len(series.values)))
    assert path == tmp_path / "det" / "artificialWithAnomaly" / "det_art_daily_jumpsup.csv"
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "label"]
    assert len(rows) == len(series.values)
    labelled = [i for i, r in enumerate(rows) if r["label"] == "1"]
    assert labelled[0] == series.windows[0][0] and labelled[-1] == series.windows[0][1]


def test_evaluation_command_writes_nab_layout_and_prints_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The evaluation command on a small NAB-shaped corpus generated here: one spike per series."""
    import json

    from plugins.anomaly_detection.evaluate import main

    rng = np.random.default_rng(0)
    windows: dict[str, list[list[str]]] = {}
    for k in range(2):
        stamps = np.datetime64("2024-01-01T00:00:00") + np.arange(2000) * np.timedelta64(300, "s")
        values = 10 + np.sin(np.arange(2000) * 2 * np.pi / 288) + 0.05 * rng.normal(size=2000)
        values[1500 + 100 * k] += 8
        path = tmp_path / "data" / "synthetic" / f"s{k}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{str(t).replace('T', ' ')},{v:.4f}\n" for t, v in zip(stamps, values))
        path.write_text("timestamp,value\n" + text)
        lo, hi = (str(stamps[1500 + 100 * k + d]).replace("T", " ") for d in (-40, 40))
        windows[f"synthetic/s{k}.csv"] = [[lo + ".000000", hi + ".000000"]]
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("all (corpus threshold)"))
    assert float(line.split()[3]) > 90  # both spikes found early in their windows, nothing else
    assert (tmp_path / "results" / "edgeGateway" / "synthetic" / "edgeGateway_s1.csv").exists()
