"""SKAB under its benchmark protocol, through the plugin's own monitor (skipped without ../shared data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plugins.predictive_maintenance.evaluate import (
    TRAIN_ROWS,
    Scores,
    detect,
    evaluate,
    load_scorer,
    main,
    read_skab,
)
from plugins.predictive_maintenance.plugin import PredictiveMaintenanceOptions

SKAB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "skab"

pytestmark = pytest.mark.skipif(not (SKAB / "valve1").is_dir(), reason=f"SKAB data not present at {SKAB}")


def test_reader_parses_channels_labels_and_time() -> None:
    rec = read_skab(SKAB / "valve1" / "1.csv", "valve1")
    assert len(rec.channels) == 8 and "Volume Flow RateRMS" in rec.channels
    assert rec.values.shape == (rec.ts.size, 8) and rec.anomaly.dtype == bool
    assert 0.3 < rec.anomaly[TRAIN_ROWS:].mean() < 0.7 and np.all(np.diff(rec.ts) > 0)


def test_scores_definition() -> None:
    truth = np.array([1, 1, 0, 0, 0], dtype=bool)
    s = Scores.of(truth, np.array([1, 0, 1, 0, 0], dtype=bool))
    assert (s.f1, s.far, s.mar) == pytest.approx((0.5, 1 / 3, 0.5))


def test_statistics_only_pipeline_meets_the_documented_figures() -> None:
    results = evaluate(SKAB, PredictiveMaintenanceOptions().monitor_settings(), use_model=False)
    overall = results["all"]
    # Regression guard for the table in docs/predictive_maintenance.md (F1 0.790, FAR 9.9 %).
    assert overall.f1 >= 0.78 and overall.far <= 0.105
    assert results["valve1"].far < 0.02


def test_int8_model_path_runs_through_the_engine() -> None:
    rec = read_skab(SKAB / "valve1" / "3.csv", "valve1")
    scorer = load_scorer(use_model=True)
    assert scorer is not None and scorer.input_length == 32
    flags = detect(rec, PredictiveMaintenanceOptions().monitor_settings(), scorer)
    s = Scores.of(rec.anomaly[TRAIN_ROWS:], flags)
    assert s.far < 0.05 and s.mar < 0.4


def test_command_prints_the_table(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--data", str(tmp_path)]) == 2  # no files: a clear error, not a crash
    assert "no SKAB files" in capsys.readouterr().err
