"""Evaluate the anomaly detector on the Numenta Anomaly Benchmark.

    python -m plugins.anomaly_detection.evaluate --data ../shared/data/nab --out results/nab

Runs the plugin's own detector code path (:class:`~plugins.anomaly_detection.detector.SeriesDetector`,
built by the same factory the plugin uses) over each series once, in time order, writes the scores in
NAB's results layout and prints the normalised standard / low-FP / low-FN scores, overall and per
category. As in NAB's protocol, the detector is told the length of the probationary period (15 % of the
series, at most 750 rows) and learns during it; nothing else about a series is given to it.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plugins.anomaly_detection.detector import DetectorConfig, SeriesDetector
from plugins.anomaly_detection.forecaster import load_default_forecaster
from plugins.anomaly_detection.nab import (
    CorpusScorer,
    NabSeries,
    load_corpus,
    load_profiles,
    probationary_length,
    write_results,
)

logger = logging.getLogger(__name__)

DETECTOR_NAME = "edgeGateway"


def run_series(series: NabSeries, use_model: bool) -> np.ndarray:
    """Scores of one series through the detector, one sample at a time."""
    config = DetectorConfig(learning_samples=probationary_length(len(series.values)), use_model=use_model)
    detector = SeriesDetector(config, load_default_forecaster() if use_model else None)
    scores = np.empty(len(series.values))
    for i, (ts, x) in enumerate(zip(series.epoch_s.tolist(), series.values.tolist())):
        scores[i] = detector.update(ts, x).score
    return scores


def evaluate(data: Path, out: Path | None, use_model: bool, detector_name: str = DETECTOR_NAME) -> dict[str, float]:
    """Run the corpus, write results (when ``out`` is given), print the table; returns overall scores."""
    corpus = load_corpus(data)
    profiles_path = data / "config" / "profiles.json"
    profiles = load_profiles(profiles_path) if profiles_path.exists() else None
    overall = CorpusScorer(profiles) if profiles else CorpusScorer()
    by_category: dict[str, CorpusScorer] = {}
    started = time.perf_counter()
    rows = 0
    for series in corpus:
        scores = run_series(series, use_model)
        rows += len(scores)
        overall.add(series.key, scores, series.windows)
        cat = by_category.setdefault(series.category, CorpusScorer(overall.profiles))
        cat.add(series.key, scores, series.windows)
        if out is not None:
            write_results(out, detector_name, series, scores)
    elapsed = time.perf_counter() - started
    results = overall.results()
    names = list(overall.profiles)
    print(
        f"detector {detector_name} (model component {'on' if use_model else 'off'}): "
        f"{len(corpus)} series, {rows} rows, {rows / elapsed:,.0f} rows/s"
    )
    print(f"{'':28s}" + "".join(f"{n:>22s}" for n in names))
    print(f"{'all (corpus threshold)':28s}" + "".join(f"{results[n].score:22.1f}" for n in names))
    for category, scorer in sorted(by_category.items()):
        # Per category: that category's own normalisation, at the corpus-wide threshold.
        line = []
        for n in names:
            raw = sum(results[n].per_series[e.name] for e in scorer.entries)
            sub = scorer.result(n)
            score = 100.0 * (raw - sub.null) / (sub.perfect - sub.null) if sub.perfect != sub.null else math.nan
            line.append(f"{score:22.1f}" if math.isfinite(score) else f"{'(no windows)':>22s}")
        print(f"{category:28s}" + "".join(line))
    print("thresholds: " + ", ".join(f"{n} {results[n].threshold:.4f}" for n in names))
    return {n: results[n].score for n in names}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="NAB root (with data/, labels/, config/)")
    parser.add_argument("--out", type=Path, default=None, help="results directory (NAB layout)")
    parser.add_argument(
        "--model", action="store_true", help="add the int8 forecaster signal (the plugin's `model:` option)"
    )
    parser.add_argument("--detector-name", default=DETECTOR_NAME, help="detector name in the results layout")


def _run(args: argparse.Namespace) -> int:
    if not (args.data / "labels" / "combined_windows.json").exists():
        print(f"no NAB corpus under {args.data}", file=sys.stderr)
        return 2
    evaluate(args.data, args.out, use_model=args.model, detector_name=args.detector_name)
    return 0


def register_cli(subparsers: Any) -> None:
    """``edge-gateway anomaly-eval``: this evaluation as a gateway command."""
    p = subparsers.add_parser(
        "anomaly-eval", help="score the anomaly detector on the NAB corpus", description=__doc__.splitlines()[0]
    )
    _add_arguments(p)
    p.set_defaults(func=_run)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return _run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
