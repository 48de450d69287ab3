"""Scoring of anomaly detectors by the rules of the Numenta Anomaly Benchmark (NAB).

What NAB documents, implemented here with numpy only:

* the first 15 % of every series (at most 750 rows) is a probationary period and is not scored;
* a detection inside a labelled window earns ``tp_weight * S(p) / S(-1)``, where ``S`` is the scaled
  sigmoid ``2 / (1 + exp(5 p)) - 1`` and ``p = -(right - i + 1) / width`` runs from -1 at the window's
  left edge to almost 0 at its right edge; only the earliest detection of a window counts;
* a window without any detection costs ``-fn_weight``;
* a detection outside every window costs ``fp_weight * S(p)`` (negative) where ``p`` is its distance past
  the previous window's right edge in units of that window's width (``S = -1`` with no window before it,
  or three widths or more past it);
* per profile, one threshold is chosen for the whole corpus (the one with the best total score; a row is
  a detection when its score is at least the threshold) and the total is normalised to
  ``100 * (raw - null) / (perfect - null)``: the null detector never fires, the perfect one fires on the
  first row of every window.

The layout written by :func:`write_results` is NAB's own (``<detector>/<category>/<detector>_<name>.csv``,
columns ``timestamp,value,anomaly_score,label``) so NAB's reference scorer can read it unchanged.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

PROBATION_PERCENT = 0.15
PROBATION_MAX_ROWS = 5000
_OUTSIDE = -1
_PROBATION = -2


@dataclass(frozen=True, slots=True)
class CostProfile:
    """One NAB application profile: the weights of true positives, false positives and misses."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


DEFAULT_PROFILES: dict[str, CostProfile] = {
    "standard": CostProfile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


def load_profiles(path: Path) -> dict[str, CostProfile]:
    """Profiles from NAB's ``config/profiles.json``."""
    raw = json.loads(path.read_text())
    return {
        name: CostProfile(
            name,
            float(spec["CostMatrix"]["tpWeight"]),
            float(spec["CostMatrix"]["fpWeight"]),
            float(spec["CostMatrix"]["fnWeight"]),
        )
        for name, spec in raw.items()
    }


def scaled_sigmoid(position: float) -> float:
    """NAB's scaled sigmoid: ~+1 at -1 (window's left edge), 0 at 0, ~-1 at +1, exactly -1 from 3 on."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probationary_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a series that are not scored."""
    return int(min(math.floor(percent * n_rows), percent * PROBATION_MAX_ROWS))


def window_indices(
    timestamps: Sequence[np.datetime64] | np.ndarray, windows: Iterable[Sequence[str]]
) -> list[tuple[int, int]]:
    """Row index ranges ``(first, last)`` (inclusive) of labelled windows given as timestamp strings."""
    ts = np.asarray(timestamps, dtype="datetime64[ms]")
    out: list[tuple[int, int]] = []
    for start, end in windows:
        first = int(np.searchsorted(ts, np.datetime64(start.strip().replace(" ", "T"), "ms"), side="left"))
        last = int(np.searchsorted(ts, np.datetime64(end.strip().replace(" ", "T"), "ms"), side="right")) - 1
        if first <= last:
            out.append((first, last))
    return out


@dataclass(frozen=True, slots=True)
class SweepRows:
    """Per-row weighted scores of one series under one profile (what a detection on that row is worth)."""

    sweep_score: np.ndarray  # float64 per row
    window: np.ndarray  # int per row: window number, -1 outside windows, -2 probationary


def sweep_rows(n_rows: int, windows: Sequence[tuple[int, int]], profile: CostProfile) -> SweepRows:
    """What a detection on each row of a series would be worth, by NAB's rules."""
    max_tp = scaled_sigmoid(-1.0)
    sweep = np.empty(n_rows, dtype=np.float64)
    window = np.full(n_rows, _OUTSIDE, dtype=np.int64)
    ordered = sorted(windows)
    prev_right: int | None = None
    prev_width = 0.0
    k = 0
    i = 0
    while i < n_rows:
        if k < len(ordered) and i == ordered[k][0]:
            first, last = ordered[k]
            width = float(last - first + 1)
            for j in range(first, min(last, n_rows - 1) + 1):
                sweep[j] = scaled_sigmoid(-(last - j + 1) / width) * profile.tp_weight / max_tp
                window[j] = k
            prev_right, prev_width = last, width
            i = last + 1
            k += 1
            continue
        # With no window before, or after a one-row window (its width would divide by zero): far past.
        position = 3.0
        if prev_right is not None and prev_width > 1.0:
            position = abs(prev_right - i) / (prev_width - 1.0)
        sweep[i] = scaled_sigmoid(position) * profile.fp_weight
        i += 1
    window[: probationary_length(n_rows)] = _PROBATION
    return SweepRows(sweep, window)


@dataclass(frozen=True, slots=True)
class ThresholdScore:
    """The corpus total at one threshold."""

    threshold: float
    score: float
    tp: int
    fp: int


@dataclass
class SeriesEntry:
    """One scored series: the detector's scores and the window row ranges."""

    name: str
    scores: np.ndarray
    windows: list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """The outcome of one profile: optimised threshold, raw totals and the normalised score."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    score: float
    per_series: Mapping[str, float]


def score_by_threshold(entries: Sequence[SeriesEntry], profile: CostProfile) -> list[ThresholdScore]:
    """The corpus total for every distinct threshold, highest threshold first (NAB's sweep).

    The first element is the threshold 1.1 (nothing detected). A threshold ``t`` detects every row
    whose score is ``>= t``.
    """
    scores_parts: list[np.ndarray] = []
    sweep_parts: list[np.ndarray] = []
    window_parts: list[np.ndarray] = []
    n_windows = 0
    for entry in entries:
        rows = sweep_rows(len(entry.scores), entry.windows, profile)
        keep = rows.window != _PROBATION
        scores_parts.append(np.asarray(entry.scores, dtype=np.float64)[keep])
        sweep_parts.append(rows.sweep_score[keep])
        win = rows.window[keep]
        window_parts.append(np.where(win >= 0, win + n_windows, _OUTSIDE))
        n_windows += len(entry.windows)
    scores = np.concatenate(scores_parts) if scores_parts else np.empty(0)
    sweep = np.concatenate(sweep_parts) if sweep_parts else np.empty(0)
    window = np.concatenate(window_parts) if window_parts else np.empty(0, dtype=np.int64)
    # Windows wholly inside the probationary period have no scorable row and are not counted.
    scorable = np.unique(window[window >= 0])
    window_score = dict.fromkeys(scorable.tolist(), -profile.fn_weight)
    window_total = -profile.fn_weight * len(scorable)
    fp_total = 0.0
    tp = fp = 0
    order = np.argsort(-scores, kind="stable")
    out: list[ThresholdScore] = []
    current = 1.1
    for idx in order.tolist():
        s = float(scores[idx])
        if s != current:
            out.append(ThresholdScore(current, window_total + fp_total, tp, fp))
            current = s
        w = int(window[idx])
        if w >= 0:
            tp += 1
            value = float(sweep[idx])
            if value > window_score[w]:
                window_total += value - window_score[w]
                window_score[w] = value
        else:
            fp += 1
            fp_total += float(sweep[idx])
    out.append(ThresholdScore(current, window_total + fp_total, tp, fp))
    return out


def series_score(entry: SeriesEntry, profile: CostProfile, threshold: float) -> float:
    """The raw score of one series at a fixed threshold."""
    rows = sweep_rows(len(entry.scores), entry.windows, profile)
    scores = np.asarray(entry.scores, dtype=np.float64)
    detected = (scores >= threshold) & (rows.window != _PROBATION)
    total = float(rows.sweep_score[detected & (rows.window == _OUTSIDE)].sum())
    for k in np.unique(rows.window[rows.window >= 0]).tolist():
        hits = np.flatnonzero(detected & (rows.window == k))
        total += float(rows.sweep_score[hits[0]]) if hits.size else -profile.fn_weight
    return total


@dataclass
class CorpusScorer:
    """Collects series and computes NAB's normalised scores, one corpus-wide threshold per profile."""

    profiles: Mapping[str, CostProfile] = field(default_factory=lambda: dict(DEFAULT_PROFILES))
    entries: list[SeriesEntry] = field(default_factory=list)

    def add(self, name: str, scores: Sequence[float] | np.ndarray, windows: Sequence[tuple[int, int]]) -> None:
        """Add one series' detector scores (one per row, in [0, 1]) and its window row ranges."""
        self.entries.append(SeriesEntry(name, np.asarray(scores, dtype=np.float64), list(windows)))

    def result(self, profile_name: str) -> ProfileResult:
        """Optimise the threshold for ``profile_name`` and normalise the total against null and perfect."""
        profile = self.profiles[profile_name]
        sweep = score_by_threshold(self.entries, profile)
        best = max(sweep, key=lambda t: t.score)  # ties: the highest threshold, as NAB does
        nulls = [SeriesEntry(e.name, np.zeros(len(e.scores)), e.windows) for e in self.entries]
        null = max(t.score for t in score_by_threshold(nulls, profile))
        perfect = profile.tp_weight * sum(len(e.windows) for e in self.entries)
        score = 100.0 * (best.score - null) / (perfect - null) if perfect != null else 0.0
        per_series = {e.name: series_score(e, profile, best.threshold) for e in self.entries}
        return ProfileResult(profile_name, best.threshold, best.score, null, perfect, score, per_series)

    def results(self) -> dict[str, ProfileResult]:
        """:meth:`result` for every profile."""
        return {name: self.result(name) for name in self.profiles}


# --- corpus and results files -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NabSeries:
    """One series of the corpus as read from disk."""

    key: str  # "<category>/<name>.csv", as in the labels file
    timestamps: list[str]
    epoch_s: np.ndarray
    values: np.ndarray
    windows: list[tuple[int, int]]

    @property
    def category(self) -> str:
        return self.key.split("/", 1)[0]

    @property
    def file_name(self) -> str:
        return self.key.split("/", 1)[1]

    def labels(self) -> np.ndarray:
        """1 inside a window, else 0."""
        out = np.zeros(len(self.values), dtype=np.int8)
        for first, last in self.windows:
            out[first : last + 1] = 1
        return out


def read_series_csv(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``timestamp,value`` rows: the timestamp strings, epoch seconds and values."""
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            stamps.append(row[0])
            values.append(float(row[1]))
    epoch = np.array([np.datetime64(s.replace(" ", "T"), "ms") for s in stamps]).astype("int64") / 1000.0
    return stamps, epoch.astype(np.float64), np.asarray(values, dtype=np.float64)


def load_corpus(root: Path) -> list[NabSeries]:
    """Every series listed in ``labels/combined_windows.json`` under ``root`` whose data file exists."""
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    out: list[NabSeries] = []
    for key in sorted(windows):
        path = root / "data" / key
        if not path.exists():
            logger.warning("no data file for %s; skipped", key)
            continue
        stamps, epoch, values = read_series_csv(path)
        idx = window_indices(np.asarray(epoch * 1000.0, dtype="int64").astype("datetime64[ms]"), windows[key])
        out.append(NabSeries(key, stamps, epoch, values, idx))
    return out


def results_path(out_dir: Path, detector: str, key: str) -> Path:
    """NAB's results layout: ``<out>/<detector>/<category>/<detector>_<name>.csv``."""
    category, name = key.split("/", 1)
    return out_dir / detector / category / f"{detector}_{name}"


def write_results(out_dir: Path, detector: str, series: NabSeries, scores: np.ndarray) -> Path:
    """Write one series' scores in NAB's results layout; returns the file written."""
    path = results_path(out_dir, detector, series.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = series.labels()
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "value", "anomaly_score", "label"])
        for stamp, value, score, label in zip(series.timestamps, series.values, scores, labels):
            writer.writerow([stamp, repr(float(value)), f"{float(score):.6f}", int(label)])
    return path
