"""Sustained ingest through the gateway vs a bare paho subscriber, on the same broker, in the same run.

Each round queues N readings (QoS1) in the broker for a consumer that is offline with a persistent
session, then lets the consumer in and times, in a separate counter process, the first to the last
message seen — the consumer's own top speed, not the publisher's:

* baseline: the counter itself is the consumer (a bare paho subscriber on the input topic);
* gateway: the gateway consumes (routing, JSON decoding, the ``passthrough`` plugin, publishing its
  outputs) and the counter, subscribed all along, times the gateway's outputs until the output of the
  last reading. With ``--emit state`` (default) the retained state per source is thinned to the
  configured interval, as in production; ``--emit event`` publishes one QoS1 event per reading.

Rounds alternate baseline and gateway so both see the same machine load; the medians and their ratio
are printed (target >= 0.8).

    python bench/ingest.py [--messages 20000] [--rounds 5] [--emit state|event]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
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
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ratio_line  # noqa: E402

from gateway.broker import LocalBroker  # noqa: E402


def _client(client_id: str = "") -> paho.Client:
    return paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)


def _connect(c: paho.Client, port: int, persistent: bool) -> None:
    props = None
    if persistent:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, clean_start=not persistent, properties=props)


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of a process so far; None = this process."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count(
    port: int, topic: str, n: int, persistent_id: str, ready: Any, go: Any, out: Any, cpu_pid: Any = None
) -> None:
    """Time the first message on topic to the one carrying the last reading (x = n - 1). With
    persistent_id: subscribe, go away, wait for `go`, come back to a backlog."""
    times: list[float] = []
    cpu: list[float] = []
    done = threading.Event()
    last = re.compile(rb'"x": ?%d(\.0)?[,}]' % (n - 1))

    def on_message(_c: object, _u: object, m: Any) -> None:
        if m.retain:  # retained state from an earlier round, sent at subscription
            return
        times.append(time.perf_counter())
        if len(times) == 1:
            cpu.append(cpu_seconds(cpu_pid.value or None))
        if last.search(m.payload):
            cpu.append(cpu_seconds(cpu_pid.value or None))
            done.set()

    def on_message_bare(_c: object, _u: object, _m: Any) -> None:
        # The baseline consumer does nothing but count: input arrives in order, the n-th is the last.
        times.append(time.perf_counter())
        if len(times) == 1:
            cpu.append(cpu_seconds(None))
        if len(times) >= n:
            cpu.append(cpu_seconds(None))
            done.set()

    if persistent_id:
        on_message = on_message_bare  # noqa: F811

    subscribed = threading.Event()
    c = _client(persistent_id)
    c.on_message = on_message
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_connect = lambda cl, *a: cl.subscribe(topic, 1)
    _connect(c, port, bool(persistent_id))
    c.loop_start()
    subscribed.wait(20)
    if persistent_id:
        c.disconnect()
        c.loop_stop()
        ready.set()
        go.wait(600)
        c = _client(persistent_id)
        c.on_message = on_message
        _connect(c, port, True)
        c.loop_start()
    else:
        ready.set()
    done.wait(600)
    c.disconnect()
    c.loop_stop()
    got = len(times)
    rate = (n - 1) / (times[-1] - times[0]) if done.is_set() and got > 1 else 0.0
    cpu_us = (cpu[1] - cpu[0]) / (n - 1) * 1e6 if len(cpu) >= 2 else float("nan")
    out.put((n if done.is_set() else 0, rate, cpu_us))


def publish(port: int, topic: str, n: int) -> None:
    payloads = [
        json.dumps({"ts": 1_700_000_000 + i * 0.01, "source": f"m{i % 16}", "values": {"x": i, "y": 0.5}}).encode()
        for i in range(n)
    ]
    c = _client()
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = [c.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(600)
    c.disconnect()
    c.loop_stop()


def bare_round(port: int, n: int) -> float:
    ready, go, out = mp.Event(), mp.Event(), mp.Queue()
    counter = mp.Process(target=count, args=(port, "bench/in", n, "bench-bare", ready, go, out, mp.Value("i", 0)))
    counter.start()
    ready.wait(30)
    publish(port, "bench/in", n)
    go.set()
    got, rate, cpu_us = out.get(timeout=900)
    counter.join(10)
    if got < n:
        raise RuntimeError(f"only {got} of {n} messages arrived")
    return float(rate), float(cpu_us)


def create_session(port: int, config: Path) -> None:
    """Run the gateway once until it is online, so the broker holds its persistent session."""
    online = threading.Event()
    c = _client()
    c.on_message = lambda _c, _u, m: online.set() if m.payload == b"online" else None
    c.on_connect = lambda cl, *a: cl.subscribe("edge/bench/status", 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    gw = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config), "--log-level", "ERROR"])
    try:
        if not online.wait(60):
            raise RuntimeError("the gateway did not come online")
        time.sleep(0.5)  # its subscription is made right after the status
    finally:
        gw.terminate()
        gw.wait(60)
        c.disconnect()
        c.loop_stop()


def gateway_round(port: int, n: int, config: Path, out_topic: str) -> float:
    ready, go, out = mp.Event(), mp.Event(), mp.Queue()
    pid = mp.Value("i", 0)
    counter = mp.Process(target=count, args=(port, out_topic, n, "", ready, go, out, pid))
    counter.start()
    ready.wait(30)
    publish(port, "bench/in", n)  # queued for the gateway's session while it is down
    gw = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config), "--log-level", "ERROR"])
    pid.value = gw.pid
    try:
        got, rate, cpu_us = out.get(timeout=900)
    finally:
        gw.terminate()
        gw.wait(60)
    counter.join(10)
    if got < n:
        raise RuntimeError(f"only {got} of {n} outputs arrived")
    return float(rate), float(cpu_us)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--emit", choices=["state", "event"], default="state")
    args = ap.parse_args()

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
    config = work / "gateway.yaml"
    out_topic = "edge/bench/pass/state/#" if args.emit == "state" else "edge/bench/pass/event"
    bare: list[float] = []
    ours: list[float] = []
    bare_cpu: list[float] = []
    ours_cpu: list[float] = []
    try:
        create_session(broker.port, config)
        for r in range(args.rounds):
            rate, cpu = bare_round(broker.port, args.messages)
            bare.append(rate)
            bare_cpu.append(cpu)
            rate, cpu = gateway_round(broker.port, args.messages, config, out_topic)
            ours.append(rate)
            ours_cpu.append(cpu)
            print(
                f"round {r + 1}: bare {bare[-1]:,.0f} msg/s ({bare_cpu[-1]:.0f} us CPU/msg), "
                f"gateway {ours[-1]:,.0f} msg/s ({ours_cpu[-1]:.0f} us CPU/msg)",
                flush=True,
            )
    finally:
        broker.stop()
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
