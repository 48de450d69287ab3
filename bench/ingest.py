"""Sustained ingest through the gateway vs a bare paho subscriber, on the same broker, in the same run.

A fast C publisher (``mosquitto_pub -l``, QoS1, ~40k msg/s here) offers N readings faster than either
consumer can take them, so each round measures the consumer's own steady-state rate:

* baseline: a bare paho subscriber (a separate process) that only counts what it receives;
* gateway: the running gateway (routing, JSON decoding, the ``passthrough`` pipeline, publishing its
  outputs); a counter process follows its outputs and reads from each the index of the reading it
  reflects. With ``--emit state`` (default) retained state per source is thinned to the configured
  interval, as in production; ``--emit event`` publishes one QoS1 event per reading through the store.

The rate is taken between the readings at 10 % and 90 % of the run (start-up and tail excluded), and so
is the consumer process's CPU time per reading. Rounds alternate baseline and gateway; medians and their
ratio are printed (target >= 0.8).

    python bench/ingest.py [--messages 30000] [--rounds 5] [--emit state|event]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, ratio_line  # noqa: E402

from gateway.broker import LocalBroker  # noqa: E402

X = re.compile(rb'"x": ?(\d+)')


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of a process so far; None = this process."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count(port: int, topic: str, n: int, bare: bool, cpu_pid: int | None, ready: Any, out: Any) -> None:
    """Follow `topic` until the reading n-1 shows up; report the steady-state rate and CPU per reading."""
    lo, hi = int(n * 0.1), int(n * 0.9)
    marks: dict[str, tuple[int, float, float]] = {}  # "lo"/"hi" -> (reading index, time, cpu seconds)
    done = threading.Event()
    seen = [0]

    def mark(index: int) -> None:
        if "lo" not in marks and index >= lo:
            marks["lo"] = (index, time.perf_counter(), cpu_seconds(cpu_pid))
        if "hi" not in marks and index >= hi:
            marks["hi"] = (index, time.perf_counter(), cpu_seconds(cpu_pid))
        if index >= n - 1:
            done.set()

    def on_bare(_c: object, _u: object, _m: object) -> None:
        # The baseline only counts: input arrives in order, so the k-th message is reading k-1.
        seen[0] += 1
        if seen[0] - 1 in (lo, hi, n - 1):
            mark(seen[0] - 1)

    def on_output(_c: object, _u: object, m: Any) -> None:
        if m.retain:  # retained state of an earlier round, sent at subscription
            return
        found = X.search(m.payload)
        if found:
            mark(int(found.group(1)))

    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.on_message = on_bare if bare else on_output
    c.on_subscribe = lambda *a: ready.set()
    c.on_connect = lambda cl, *a: cl.subscribe(topic, 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    ok = done.wait(600)
    c.disconnect()
    c.loop_stop()
    if not ok or "lo" not in marks or "hi" not in marks:
        out.put((float("nan"), float("nan")))
        return
    (i0, t0, c0), (i1, t1, c1) = marks["lo"], marks["hi"]
    out.put(((i1 - i0) / (t1 - t0), (c1 - c0) / (i1 - i0) * 1e6))


def write_readings(path: Path, n: int, offset: int) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {"ts": 1_700_000_000 + (offset + i) * 0.01, "source": f"m{i % 16}", "values": {"x": i, "y": 0.5}}
                )
                + "\n"
            )


def one_round(
    port: int, topic: str, sub_topic: str, lines: Path, n: int, bare: bool, cpu_pid: int | None
) -> tuple[float, float]:
    ctx = mp.get_context("spawn")  # a fresh interpreter, like the gateway's own process
    ready, out = ctx.Event(), ctx.Queue()
    counter = ctx.Process(target=count, args=(port, sub_topic, n, bare, cpu_pid, ready, out))
    counter.start()
    ready.wait(30)
    with open(lines, "rb") as f:
        subprocess.run(
            ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", "1", "-l"], stdin=f, check=True
        )
    rate, cpu_us = out.get(timeout=900)
    counter.join(10)
    return float(rate), float(cpu_us)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=30000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--emit", choices=["state", "event"], default="state")
    args = ap.parse_args()
    if shutil.which("mosquitto_pub") is None:
        raise SystemExit("mosquitto_pub is needed (Debian: apt-get install mosquitto-clients)")

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    broker = LocalBroker(workdir=work / "broker", persistence=False).start()
    cfg = {
        "gateway_id": "bench",
        "data_dir": str(work / "data"),
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "metrics": {"interval_s": 5},
        "pipelines": [
            {"name": "pass", "plugin": "passthrough", "inputs": ["bench/in"], "options": {"emit": args.emit}}
        ],
    }
    (work / "gateway.yaml").write_text(yaml.safe_dump(cfg))
    lines = work / "readings.txt"
    write_readings(lines, args.messages, 0)
    gw = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(work / "gateway.yaml"), "--log-level", "ERROR"]
    )
    out_topic = "edge/bench/pass/state/#" if args.emit == "state" else "edge/bench/pass/event"
    bare: list[float] = []
    ours: list[float] = []
    bare_cpu: list[float] = []
    ours_cpu: list[float] = []
    try:
        time.sleep(3)
        one_round(broker.port, "bench/in", out_topic, lines, args.messages, False, gw.pid)  # warm-up
        for r in range(args.rounds):
            rate, cpu = one_round(broker.port, "bench/bare", "bench/bare", lines, args.messages, True, None)
            bare.append(rate)
            bare_cpu.append(cpu)
            rate, cpu = one_round(broker.port, "bench/in", out_topic, lines, args.messages, False, gw.pid)
            ours.append(rate)
            ours_cpu.append(cpu)
            print(
                f"round {r + 1}: bare {bare[-1]:,.0f} msg/s ({bare_cpu[-1]:.0f} us CPU/msg), "
                f"gateway {ours[-1]:,.0f} msg/s ({ours_cpu[-1]:.0f} us CPU/msg)",
                flush=True,
            )
    finally:
        gw.terminate()
        gw.wait(60)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"CPU per message (median): bare {median(bare_cpu):.0f} us, gateway {median(ours_cpu):.0f} us")
    print(
        ratio_line(
            f"ingest ({args.emit} per reading, {args.messages} msgs x {args.rounds} rounds)",
            ours,
            bare,
            "msg/s",
            target=0.8,
        )
    )


if __name__ == "__main__":
    main()
