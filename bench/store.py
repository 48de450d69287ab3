"""Store-and-forward throughput against its baselines, measured in the same run.

1. write: results/s stored through the outbox (``put`` + ``flush``, SQLite, default settings) vs a bare
   batched sqlite-utils ``insert_all`` of the same rows into a table of the same shape (order A B B A,
   so load changes on a shared machine hit both sides alike).  Target >= 0.8.
2. drain: records/s delivered from a backlog (built while the broker was unreachable) through a
   ``Deliverer`` and a real paho connection, acknowledged by a real Mosquitto, vs a bare paho QoS1
   publisher sending the same payloads to the same broker and waiting for every PUBACK.  Target >= 0.8.

Usage: ``python bench/store.py [--records 20000] [--runs 5] [--payload 200]``. Prints each run and the
median ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlite_utils import Database

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.broker import LocalBroker  # noqa: E402
from gateway.config.models import MqttConfig  # noqa: E402
from gateway.ids import new_id  # noqa: E402
from gateway.mqtt import MqttLink, make_client  # noqa: E402
from gateway.store.config import StoreConfig  # noqa: E402
from gateway.store.delivery import Deliverer  # noqa: E402
from gateway.store.outbox import Outbox  # noqa: E402

#: the gateway's default local broker settings (protocol, QoS1 window), used by both sides of the drain
MQTT = MqttConfig()


def payloads(n: int, size: int) -> list[bytes]:
    pad = "x" * max(0, size - 120)
    return [
        json.dumps(
            {"v": 1, "id": new_id(), "ts": time.time(), "type": "crossing", "data": {"n": i, "pad": pad}}
        ).encode()
        for i in range(n)
    ]


def write_outbox(data: list[bytes], ids: list[str], path: Path) -> float:
    """Rows/s stored through the outbox: ``put`` per result, then the durability barrier."""
    cfg = StoreConfig(path=path, limits={"event": {"max_rows": None, "max_bytes": None}})
    ob = Outbox.open(cfg)
    now = time.time()
    start = time.perf_counter()
    for rid, p in zip(ids, data):
        ob.put("event", "traffic", "edge/gw/traffic/event", p, record_id=rid, created_at=now)
    ob.flush(timeout=300)
    rate = len(data) / (time.perf_counter() - start)
    ob.close()
    return rate


def write_bare(data: list[bytes], ids: list[str], path: Path, batch_size: int) -> float:
    """Rows/s of one batched sqlite-utils ``insert_all`` of the same rows into a table of the same shape."""
    db = Database(path)
    db.enable_wal()
    db.execute("PRAGMA synchronous = NORMAL")
    schema = {
        "id": str,
        "kind": str,
        "pipeline": str,
        "topic": str,
        "payload": bytes,
        "qos": int,
        "retain": int,
        "created_at": float,
        "targets": int,
        "pending": int,
        "size": int,
    }
    db.table("records").create(schema, pk="id")
    now = time.time()
    start = time.perf_counter()
    # the same rows, in insert_all's fastest form (a header, then tuples)
    rows = [list(schema)] + [
        (rid, "event", "traffic", "edge/gw/traffic/event", p, 1, 0, now, 1, 1, len(p)) for rid, p in zip(ids, data)
    ]
    db.table("records").insert_all(rows, batch_size=batch_size)
    rate = len(data) / (time.perf_counter() - start)
    db.close()
    return rate


def bench_write(n: int, size: int, workdir: Path) -> tuple[float, float]:
    """(outbox rows/s, bare insert_all rows/s), each the mean of two runs in the order A B B A."""
    data = payloads(n, size)
    ids = [new_id() for _ in data]  # made by the publisher (it puts them in the payload) before storing
    batch = StoreConfig().batch_size
    a1 = write_outbox(data, ids, workdir / "outbox1.db")
    b1 = write_bare(data, ids, workdir / "bare1.db", batch)
    b2 = write_bare(data, ids, workdir / "bare2.db", batch)
    a2 = write_outbox(data, ids, workdir / "outbox2.db")
    return (a1 + a2) / 2, (b1 + b2) / 2


def bench_drain(n: int, size: int, broker: LocalBroker, workdir: Path) -> tuple[float, float]:
    """(outbox drain records/s, bare paho QoS1 records/s)."""
    data = payloads(n, size)
    ob = Outbox.open(StoreConfig(path=workdir / "drain.db", limits={"event": {"max_rows": None, "max_bytes": None}}))
    for p in data:
        ob.put("event", "traffic", "edge/gw/traffic/event", p)
    ob.flush(timeout=300)  # the backlog left by an outage
    # the gateway's own local link and deliverer, with the settings the gateway gives them by default
    link = MqttLink(MQTT.model_copy(update={"host": broker.host, "port": broker.port}), f"bench-outbox-{os.getpid()}")
    deliverer = Deliverer(ob, "local", link)
    link.start()
    deadline = time.monotonic() + 10
    while not link.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    start = time.perf_counter()
    deliverer.start()
    deadline = time.monotonic() + 300
    # done when every acknowledgement is persisted in the outbox
    while deliverer.stats().acknowledged < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"drain incomplete: {deliverer.stats()}")
        time.sleep(0.005)
    deliverer.stop()  # hands the last acknowledgements to the outbox
    ob.flush(timeout=60)
    outbox_rate = n / (time.perf_counter() - start)
    delivered = ob.stats().destinations["local"].delivered
    if delivered != n:
        raise RuntimeError(f"{delivered} of {n} marked delivered")
    link.stop()
    ob.close()

    # the same protocol version and QoS1 window as the gateway's link
    client = make_client(MQTT, f"bench-bare-{os.getpid()}")
    client.max_inflight_messages_set(MQTT.max_inflight)
    client.max_queued_messages_set(0)
    bare_done = threading.Event()
    bare_acked = [0]

    def on_publish(*_a: object) -> None:
        bare_acked[0] += 1
        if bare_acked[0] >= n:
            bare_done.set()

    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    time.sleep(0.2)
    start = time.perf_counter()
    for p in data:
        client.publish("edge/gw/traffic/event", p, qos=1)
    if not bare_done.wait(300):
        raise RuntimeError(f"bare publisher incomplete: {bare_acked[0]} of {n}")
    bare_rate = n / (time.perf_counter() - start)
    client.disconnect()
    client.loop_stop()
    return outbox_rate, bare_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--payload", type=int, default=200, help="payload bytes per record")
    args = parser.parse_args()

    write_ratios, drain_ratios = [], []
    with (
        tempfile.TemporaryDirectory(prefix="bench-store-") as tmp,
        LocalBroker(workdir=Path(tmp) / "broker", persistence=False) as broker,
    ):
        for run in range(args.runs):
            work = Path(tmp) / f"run{run}"
            work.mkdir()
            ob_w, bare_w = bench_write(args.records, args.payload, work)
            write_ratios.append(ob_w / bare_w)
            ob_d, bare_d = bench_drain(args.records, args.payload, broker, work)
            drain_ratios.append(ob_d / bare_d)
            print(
                f"run {run + 1}: write outbox {ob_w:8.0f}/s bare insert_all {bare_w:8.0f}/s ratio {ob_w / bare_w:.2f} | "
                f"drain outbox {ob_d:7.0f}/s bare paho {bare_d:7.0f}/s ratio {ob_d / bare_d:.2f}",
                flush=True,
            )
    print(f"median write ratio {statistics.median(write_ratios):.2f} (target >= 0.8)")
    print(f"median drain ratio {statistics.median(drain_ratios):.2f} (target >= 0.8)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
