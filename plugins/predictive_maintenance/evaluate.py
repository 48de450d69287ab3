"""Evaluate the predictive-maintenance pipeline on SKAB under the benchmark's own protocol.

For every fault file: the first 400 rows are the learning period (the monitor learns them, then
``finish_learning``), the remaining rows are streamed one by one through the same
:class:`~plugins.predictive_maintenance.monitor.MachineMonitor` the plugin uses (same windowing,
features, learning period and int8 model through the gateway's inference engine). A row is labelled
anomalous when the machine's alarm is active after that row. F1 is computed over all test rows of all
files together against the ``anomaly`` column; FAR is the share of normal rows flagged, MAR the share
of anomalous rows missed. Nothing is fitted on the test part, and the settings are the plugin's
defaults, the same for every file.

    python -m plugins.predictive_maintenance.evaluate --data ../shared/data/skab [--no-model]
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
        i_anom = header.index("anomaly")
        ts, rows, labels = [], [], []
        for line in fh:
            parts = line.strip().split(";")
            if len(parts) < len(header):
                continue
            ts.append(datetime.fromisoformat(parts[0]).timestamp())
            rows.append([float(v) for v in parts[1 : 1 + len(channels)]])
            labels.append(float(parts[i_anom]) > 0.5)
    return Recording(group, path.stem, channels, np.asarray(ts), np.asarray(rows), np.asarray(labels))


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

    @classmethod
    def of(cls, truth: NDArray[np.bool_], flagged: NDArray[np.bool_]) -> Scores:
        tp = int(np.sum(truth & flagged))
        fp = int(np.sum(~truth & flagged))
        fn = int(np.sum(truth & ~flagged))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        far = fp / max(int(np.sum(~truth)), 1)
        mar = fn / max(int(np.sum(truth)), 1)
        return cls(f1, far, mar, int(truth.size))


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    settings = PredictiveMaintenanceOptions(**overrides).monitor_settings()
    start = time.perf_counter()
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
    print(f"elapsed {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
