"""Throughput and memory of the anomaly detection plugin, against bare ingest measured in the same run.

    python bench/anomaly.py [--samples 60000] [--repeats 3] [--model]

For 1, 100 and 5,000 series it prepares the same JSON payloads (``{"ts", "source", "values"}``, one
channel each), then times

* bare ingest: ``json.loads`` of every payload and building the ``ReadingBatch`` the core would hand over;
* the plugin: the same, plus ``AnomalyDetectionPlugin.process`` (score, alarms, outputs).

It prints samples/s (median of the repeats), the ratio plugin / bare ingest, the Python heap per series
(tracemalloc) and the size of one series' persisted state. Every series gets at least 40 samples, so
with 5,000 series the run is 200,000 samples and measures steady state, not only series creation.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.inference import ModelRegistry  # noqa: E402
from gateway.messages import Reading, ReadingBatch  # noqa: E402
from gateway.plugin import PluginContext  # noqa: E402
from gateway.statestore import StateStore  # noqa: E402
from plugins.anomaly_detection.forecaster import MODEL_NAME, shipped_model_spec  # noqa: E402
from plugins.anomaly_detection.plugin import AnomalyDetectionOptions, AnomalyDetectionPlugin  # noqa: E402


def payloads(n_series: int, total: int) -> list[bytes]:
    # At least 40 samples per series, so every series is past the forecaster's 32-sample window.
    per = max(total // n_series, 40)
    out = []
    for i in range(per):
        ts = 1_700_000_000.0 + 60.0 * i
        for s in range(n_series):
            v = 20 + 5 * math.sin(2 * math.pi * (i + s) / 1440) + 0.1 * math.sin(7.3 * i + s)
            out.append(json.dumps({"ts": ts, "source": f"dev{s}", "values": {"temp": round(v, 4)}}).encode())
    return out


def decode(payload: bytes) -> ReadingBatch:
    msg = json.loads(payload)
    return ReadingBatch("sensors", msg["ts"], (Reading(msg["ts"], msg["source"], msg["values"]),))


def make_plugin(tmp: Path, use_model: bool) -> AnomalyDetectionPlugin:
    ctx = PluginContext(
        pipeline="bench",
        gateway_id="bench",
        logger=logging.getLogger("bench"),
        clock=time.time,
        data_dir=tmp,
        models=ModelRegistry({MODEL_NAME: shipped_model_spec()}, tmp),
        state=StateStore(tmp / "state.db", "bench"),
    )
    opts = AnomalyDetectionOptions(
        max_series=10_000,
        learning_samples=0,
        persist_interval_s=1e9,
        model=MODEL_NAME if use_model else None,
    )
    return AnomalyDetectionPlugin(opts, ctx)


def bare(data: list[bytes]) -> float:
    t0 = time.perf_counter()
    for p in data:
        decode(p)
    return len(data) / (time.perf_counter() - t0)


def through_plugin(data: list[bytes], plugin: AnomalyDetectionPlugin) -> float:
    t0 = time.perf_counter()
    for p in data:
        plugin.process(decode(p))
    return len(data) / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", action="store_true", help="include the int8 forecaster signal")
    args = parser.parse_args()
    print(f"{'series':>7} {'bare ingest/s':>14} {'plugin/s':>10} {'ratio':>6} {'heap/series':>12} {'state/series':>13}")
    for n_series in (1, 100, 5000):
        data = payloads(n_series, args.samples)
        bare_runs, plugin_runs = [], []
        heap = state_bytes = 0.0
        for r in range(args.repeats):
            bare_runs.append(bare(data))
            with tempfile.TemporaryDirectory() as tmp:
                plugin = make_plugin(Path(tmp), args.model)
                if r == 0:
                    tracemalloc.start()
                    before = tracemalloc.take_snapshot()
                plugin_runs.append(through_plugin(data, plugin))
                if r == 0:
                    after = tracemalloc.take_snapshot()
                    tracemalloc.stop()
                    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
                    heap = grown / n_series
                    slot = next(iter(plugin._series.values()))
                    state_bytes = len(json.dumps(plugin._slot_state(slot)))
                    plugin_runs.pop()  # tracemalloc slows the first run: time it again
                    plugin2 = make_plugin(Path(tmp) / "again", args.model)
                    plugin_runs.append(through_plugin(data, plugin2))
        b, p = statistics.median(bare_runs), statistics.median(plugin_runs)
        print(
            f"{n_series:>7} {b:>14,.0f} {p:>10,.0f} {p / b:>6.3f} {heap / 1024:>10.1f}kB {state_bytes / 1024:>11.1f}kB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
