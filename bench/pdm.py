"""Throughput and memory of the predictive-maintenance pipeline, against bare ingest in the same run.

* **bare ingest**: JSON payloads decoded into readings by the gateway's own decoder (what every
  readings pipeline pays before its plugin runs);
* **pipeline**: the same payloads decoded and processed by ``PredictiveMaintenancePlugin`` (windows,
  features, baseline, health, alarms, state outputs), statistics only and with the int8 forecaster.

Readings come from the project's simulator (8 channels, 1 Hz per machine, ``--machines`` machines,
past their learning period). Each figure is the median of ``--repeats`` runs; ratios are taken
against bare ingest measured in the same run. Memory per machine is the traced Python heap growth
per monitored machine (``tracemalloc``) plus the size of its persisted state.

    python bench/pdm.py [--machines 50] [--seconds 120] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.decode import decode_readings  # noqa: E402
from gateway.messages import RawMessage  # noqa: E402
from gateway.plugin import PluginContext  # noqa: E402
from gateway.statestore import StateStore  # noqa: E402
from plugins.predictive_maintenance import PredictiveMaintenanceOptions, PredictiveMaintenancePlugin  # noqa: E402
from plugins.predictive_maintenance.scoring import TFLiteModel, packaged_model_path  # noqa: E402
from plugins.predictive_maintenance.simulator import MachineSimulator  # noqa: E402

T0 = 1_700_000_000.0
LEARN = 100


class _Models:
    def get(self, name: str) -> Any:
        try:
            from gateway.inference import ModelRegistry, ModelSpec

            spec = ModelSpec(path=f"pkg://plugins.predictive_maintenance/models/{name}_int8.tflite")
            return ModelRegistry({name: spec}, Path.cwd()).get(name)
        except ImportError:
            return TFLiteModel(packaged_model_path())


def payloads(machines: int, seconds: int, start: int, seed: int = 0) -> list[RawMessage]:
    sim = MachineSimulator([f"pump-{i}" for i in range(machines)], seed=seed)
    out: list[RawMessage] = []
    for t in range(start, start + seconds):
        out.extend(RawMessage(f"plant/{s}", p, 1, False, T0 + t) for s, p in sim.messages(T0 + t))
    return out


def make_plugin(tmp: Path, model: str | None) -> PredictiveMaintenancePlugin:
    ctx = PluginContext(
        pipeline="pdm",
        gateway_id="bench",
        logger=logging.getLogger("bench.pdm"),
        clock=time.time,
        data_dir=tmp,
        models=_Models(),
        state=StateStore(tmp / f"state-{model}.db", "pdm"),
    )
    return PredictiveMaintenancePlugin(PredictiveMaintenanceOptions(learning_windows=LEARN, model=model), ctx)


def rate(messages: list[RawMessage], plugin: PredictiveMaintenancePlugin | None) -> float:
    start = time.perf_counter()
    readings = 0
    for m in messages:
        batch = decode_readings(m)
        readings += len(batch.readings)
        if plugin is not None:
            plugin.process(batch)
    return readings / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machines", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        warm = payloads(args.machines, LEARN + 10, 0)
        plugins = {"statistics": make_plugin(tmp, None), "int8 model": make_plugin(tmp, "pdm_forecaster")}
        for p in plugins.values():
            rate(warm, p)  # learning period done for every machine
        results: dict[str, list[float]] = {"bare ingest": [], **{k: [] for k in plugins}}
        for r in range(args.repeats):
            msgs = payloads(args.machines, args.seconds, LEARN + 10 + r * args.seconds, seed=r)
            results["bare ingest"].append(rate(msgs, None))
            for name, p in plugins.items():
                results[name].append(rate(msgs, p))

        # Memory: heap growth per monitored machine once learned, and persisted state size.
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        mem_plugin = make_plugin(tmp, None)
        rate(payloads(args.machines, LEARN + 10, 0, seed=99), mem_plugin)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        heap = sum(s.size_diff for s in after.compare_to(before, "filename"))
        state_bytes = [len(json.dumps(s.monitor.to_state())) for s in mem_plugin._machines.values()]

    base = statistics.median(results["bare ingest"])
    print(f"machines={args.machines} channels=8 seconds/run={args.seconds} repeats={args.repeats}")
    print("| path | readings/s (median) | ratio to bare ingest |")
    print("|---|---:|---:|")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"| {name} | {med:,.0f} | {med / base:.3f} |")
    print(
        f"memory per machine: {heap / args.machines / 1024:.1f} KiB heap, "
        f"{statistics.median(state_bytes) / 1024:.1f} KiB persisted state"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
