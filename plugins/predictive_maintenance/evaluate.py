"""Evaluate the predictive-maintenance pipeline on SKAB under the benchmark's own protocol.

For every fault file: the first 400 rows are the learning period (the monitor learns them, then
``finish_learning``), the remaining rows are streamed one by one through the same
:class:`~plugins.predictive_maintenance.monitor.MachineMonitor` the plugin uses (same windowing,
features, learning period and int8 model through the gateway's inference engine). A row is labelled
anomalous when the machine's alarm is active after that row. F1 is computed over all test rows of all
files together against the ``anomaly`` column; FAR is the share of normal rows flagged, MAR the share
of anomalous rows missed. Nothing is fitted on the test part, and the settings are the plugin's
defaults, the same for every file.

It also reports the FAR on the anomaly-free recording cut into experiments of 1,150 rows (400
learned, 750 scored): normal operation with no labels to argue about.

``--leave-group-out`` checks how well settings chosen on some files carry over to others: the
candidates of :data:`SELECTION_GRID` are chosen on one fault group and scored on the other (both
ways), and on random halves of the files.

    python -m plugins.predictive_maintenance.evaluate --data ../shared/data/skab [--no-model] [--leave-group-out]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from plugins.predictive_maintenance.monitor import MachineMonitor, MonitorSettings
from plugins.predictive_maintenance.plugin import PredictiveMaintenanceOptions
from plugins.predictive_maintenance.scoring import PACKAGE_MODEL_URI, InnovationScorer, TFLiteModel, packaged_model_path

logger = logging.getLogger(__name__)

TRAIN_ROWS = 400
GROUPS = ("valve1", "other")


@dataclass(frozen=True, slots=True)
class Recording:
    """One SKAB experiment: timestamps, channel values, anomaly labels."""

    group: str
    name: str
    channels: tuple[str, ...]
    ts: NDArray[np.float64]
    values: NDArray[np.float64]
    anomaly: NDArray[np.bool_]


def read_skab(path: Path, group: str) -> Recording:
    """Parse one ``;``-separated SKAB file."""
    with path.open(encoding="utf-8") as fh:
        header = fh.readline().strip().split(";")
        channels = tuple(h for h in header[1:] if h not in ("anomaly", "changepoint"))
        i_anom = header.index("anomaly") if "anomaly" in header else None
        ts, rows, labels = [], [], []
        for line in fh:
            parts = line.strip().split(";")
            if len(parts) < len(header):
                continue
            ts.append(datetime.fromisoformat(parts[0]).timestamp())
            rows.append([float(v) for v in parts[1 : 1 + len(channels)]])
            labels.append(i_anom is not None and float(parts[i_anom]) > 0.5)
    return Recording(group, path.stem, channels, np.asarray(ts), np.asarray(rows), np.asarray(labels))


NORMAL_EXPERIMENT_ROWS = 1150
"""Rows per experiment cut from the anomaly-free file: 400 learning + 750 test, like a fault file."""


def normal_experiments(root: Path) -> list[Recording]:
    """The anomaly-free recording cut into consecutive experiments of :data:`NORMAL_EXPERIMENT_ROWS` rows."""
    path = root / "anomaly-free" / "anomaly-free.csv"
    if not path.is_file():
        return []
    rec = read_skab(path, "anomaly-free")
    n = NORMAL_EXPERIMENT_ROWS
    return [
        Recording(
            rec.group,
            f"{rec.name}[{i}:{i + n}]",
            rec.channels,
            rec.ts[i : i + n],
            rec.values[i : i + n],
            rec.anomaly[i : i + n],
        )
        for i in range(0, rec.ts.size - n + 1, n)
    ]


def normal_far(root: Path, settings: MonitorSettings, use_model: bool) -> tuple[float, int] | None:
    """FAR on normal operation never labelled by hand: the anomaly-free file's experiments (share, count)."""
    experiments = normal_experiments(root)
    if not experiments:
        return None
    scorer = load_scorer(use_model)
    flagged = np.concatenate([detect(rec, settings, scorer) for rec in experiments])
    return float(flagged.mean()), len(experiments)


def recordings(root: Path) -> Iterator[Recording]:
    """All fault files under ``root`` (``valve1/``, ``other/``), in a stable order."""
    for group in GROUPS:
        files = sorted((root / group).glob("*.csv"), key=lambda p: (len(p.stem), p.stem))
        for path in files:
            yield read_skab(path, group)


def load_scorer(use_model: bool) -> InnovationScorer | None:
    """The forecaster through the gateway engine (LiteRT directly if the engine is unavailable)."""
    if not use_model:
        return None
    try:
        from gateway.inference import ModelRegistry, ModelSpec

        registry = ModelRegistry({"pdm_forecaster": ModelSpec(path=PACKAGE_MODEL_URI)}, Path.cwd())
        return InnovationScorer(registry.get("pdm_forecaster"))
    except ImportError:
        return InnovationScorer(TFLiteModel(packaged_model_path()))


def detect(rec: Recording, settings: MonitorSettings, scorer: InnovationScorer | None) -> NDArray[np.bool_]:
    """Stream one recording through a fresh monitor; alarm state after each test row."""
    monitor = MachineMonitor(rec.name, rec.channels, settings, scorer)
    flags = np.zeros(len(rec.ts) - TRAIN_ROWS, dtype=bool)
    for i in range(TRAIN_ROWS):
        monitor.push(float(rec.ts[i]), dict(zip(rec.channels, rec.values[i], strict=True)))
    monitor.finish_learning()
    for i in range(TRAIN_ROWS, len(rec.ts)):
        monitor.push(float(rec.ts[i]), dict(zip(rec.channels, rec.values[i], strict=True)))
        flags[i - TRAIN_ROWS] = monitor.alarm.active
    return flags


@dataclass(frozen=True, slots=True)
class Scores:
    """Binary-classification scores over a set of rows."""

    f1: float
    far: float
    mar: float
    rows: int
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @classmethod
    def from_counts(cls, tp: int, fp: int, fn: int, rows: int) -> Scores:
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        far = fp / max(rows - tp - fn, 1)
        mar = fn / max(tp + fn, 1)
        return cls(f1, far, mar, rows, tp, fp, fn)

    @classmethod
    def of(cls, truth: NDArray[np.bool_], flagged: NDArray[np.bool_]) -> Scores:
        tp = int(np.sum(truth & flagged))
        fp = int(np.sum(~truth & flagged))
        fn = int(np.sum(truth & ~flagged))
        return cls.from_counts(tp, fp, fn, int(truth.size))

    def __add__(self, other: Scores) -> Scores:
        """Scores of the union of two disjoint sets of rows."""
        return Scores.from_counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.rows + other.rows)


def evaluate(root: Path, settings: MonitorSettings, use_model: bool) -> dict[str, Scores]:
    """Scores overall and per fault group."""
    scorer = load_scorer(use_model)
    truth: dict[str, list[NDArray[np.bool_]]] = {g: [] for g in GROUPS}
    flags: dict[str, list[NDArray[np.bool_]]] = {g: [] for g in GROUPS}
    for rec in recordings(root):
        truth[rec.group].append(rec.anomaly[TRAIN_ROWS:])
        flags[rec.group].append(detect(rec, settings, scorer))
    out: dict[str, Scores] = {}
    all_t = [t for g in GROUPS for t in truth[g]]
    all_f = [f for g in GROUPS for f in flags[g]]
    if not all_t:
        raise FileNotFoundError(f"no SKAB files under {root}/valve1 or {root}/other")
    out["all"] = Scores.of(np.concatenate(all_t), np.concatenate(all_f))
    for g in GROUPS:
        if truth[g]:
            out[g] = Scores.of(np.concatenate(truth[g]), np.concatenate(flags[g]))
    return out


SELECTION_GRID: tuple[dict[str, Any], ...] = tuple(
    {"alarm": {"score": score}, "shift_k": k} for score in (2.0, 2.25, 2.5) for k in (None, 1.5, 2.0, 2.5)
)
"""Candidate settings of the robustness checks: alarm score x CUSUM allowance (off, 1.5, 2, 2.5)."""

MAX_FAR = 0.10

SelectionRuns = list[tuple[dict[str, Any], dict[str, Scores]]]
"""Per candidate settings: scores of every file, keyed ``group/name``."""


def file_scores(root: Path, settings: MonitorSettings, use_model: bool) -> dict[str, Scores]:
    """Scores of every fault file on its own, keyed ``group/name`` (pool them with ``sum``/``+``)."""
    scorer = load_scorer(use_model)
    return {
        f"{rec.group}/{rec.name}": Scores.of(rec.anomaly[TRAIN_ROWS:], detect(rec, settings, scorer))
        for rec in recordings(root)
    }


def selection_runs(root: Path, use_model: bool) -> SelectionRuns:
    """Every candidate of :data:`SELECTION_GRID`, scored per file."""
    runs = [
        (grid, file_scores(root, PredictiveMaintenanceOptions(**grid).monitor_settings(), use_model))
        for grid in SELECTION_GRID
    ]
    if not runs or not runs[0][1]:
        raise FileNotFoundError(f"no SKAB files under {root}/valve1 or {root}/other")
    return runs


def _pool(scores: dict[str, Scores], keys: Sequence[str]) -> Scores:
    total = scores[keys[0]]
    for key in keys[1:]:
        total = total + scores[key]
    return total


def choose(runs: SelectionRuns, keys: Sequence[str]) -> tuple[dict[str, Any], Scores]:
    """The candidate with the best pooled F1 on ``keys`` among those with FAR <= 10 % there (all, if none)."""
    pooled = [(grid, _pool(scores, keys)) for grid, scores in runs]
    eligible = [p for p in pooled if p[1].far <= MAX_FAR] or pooled
    return max(eligible, key=lambda p: p[1].f1)


def leave_group_out(runs: SelectionRuns) -> list[tuple[str, dict[str, Any], Scores, Scores]]:
    """Choose settings on one fault group, score them on the other.

    For each group, :func:`choose` on that group's files; reported: ``(chosen on, options, scores
    on that group, scores on the held-out group)``.
    """
    keys = list(runs[0][1])
    out = []
    for chosen_on in GROUPS:
        there = [k for k in keys if k.startswith(chosen_on + "/")]
        held = [k for k in keys if not k.startswith(chosen_on + "/")]
        grid, fit = choose(runs, there)
        scores = next(s for g, s in runs if g is grid)
        out.append((chosen_on, grid, fit, _pool(scores, held)))
    return out


def random_halves(runs: SelectionRuns, splits: int = 200, seed: int = 0) -> list[tuple[dict[str, Any], Scores]]:
    """Choose settings on a random half of the files, score them on the other half, ``splits`` times."""
    rng = np.random.default_rng(seed)
    keys = list(runs[0][1])
    out = []
    for _ in range(splits):
        order = rng.permutation(len(keys))
        half = len(keys) // 2
        there = [keys[i] for i in order[:half]]
        held = [keys[i] for i in order[half:]]
        grid, _ = choose(runs, there)
        scores = next(s for g, s in runs if g is grid)
        out.append((grid, _pool(scores, held)))
    return out


def format_table(results: dict[str, Scores], files: int) -> str:
    lines = ["| group | test rows | F1 | FAR % | MAR % |", "|---|---:|---:|---:|---:|"]
    for name, s in results.items():
        lines.append(f"| {name} | {s.rows} | {s.f1:.3f} | {100 * s.far:.2f} | {100 * s.mar:.2f} |")
    return "\n".join(lines) + f"\n({files} files)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="SKAB directory (holding valve1/ and other/)")
    parser.add_argument("--no-model", action="store_true", help="statistics only, without the int8 forecaster")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTION=JSON",
        help="override a plugin option, e.g. --set shift_k=1.5 (repeatable); defaults otherwise",
    )
    parser.add_argument(
        "--leave-group-out",
        action="store_true",
        help="choose alarm score and CUSUM allowance on one fault group, report them on the other (both ways)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    settings = PredictiveMaintenanceOptions(**overrides).monitor_settings()
    start = time.perf_counter()
    if args.leave_group_out:
        try:
            runs = selection_runs(args.data, use_model=not args.no_model)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        checks = leave_group_out(runs)
        print("| chosen on | options | F1 there | held-out group | F1 | FAR % | MAR % |")
        print("|---|---|---:|---|---:|---:|---:|")
        for chosen_on, grid, there, held in checks:
            other = next(g for g in GROUPS if g != chosen_on)
            print(
                f"| {chosen_on} | `{json.dumps(grid)}` | {there.f1:.3f} | {other} | {held.f1:.3f} | "
                f"{100 * held.far:.2f} | {100 * held.mar:.2f} |"
            )
        pooled = checks[0][3] + checks[1][3]
        print(
            f"every file scored with settings chosen on the other group: F1 {pooled.f1:.3f}, "
            f"FAR {100 * pooled.far:.2f} %, MAR {100 * pooled.mar:.2f} %"
        )
        halves = random_halves(runs)
        f1 = np.array([h.f1 for _, h in halves])
        far = np.array([h.far for _, h in halves])
        defaults = PredictiveMaintenanceOptions()
        picked_defaults = sum(
            g["alarm"]["score"] == defaults.alarm.score and g["shift_k"] == defaults.shift_k for g, _ in halves
        )
        print(
            f"{len(halves)} random halves (choose on one half of the files, score the other): held-out F1 median "
            f"{np.median(f1):.3f} (10-90 %: {np.quantile(f1, 0.1):.3f}-{np.quantile(f1, 0.9):.3f}), FAR median "
            f"{100 * np.median(far):.2f} % (10-90 %: {100 * np.quantile(far, 0.1):.2f}-{100 * np.quantile(far, 0.9):.2f}); "
            f"the defaults chosen in {picked_defaults}"
        )
        print(f"elapsed {time.perf_counter() - start:.1f} s")
        return 0
    try:
        results = evaluate(args.data, settings, use_model=not args.no_model)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files = sum(1 for _ in recordings(args.data))
    print(
        f"model: {'none (statistics only)' if args.no_model else 'pdm_forecaster int8'}; options: {overrides or 'defaults'}"
    )
    print(format_table(results, files))
    normal = normal_far(args.data, settings, use_model=not args.no_model)
    if normal is not None:
        print(
            f"anomaly-free file ({normal[1]} experiments of {NORMAL_EXPERIMENT_ROWS} rows, "
            f"first {TRAIN_ROWS} learned): FAR {100 * normal[0]:.2f} %"
        )
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
