"""``edge-gateway watch``: the view built from published samples, run as a command and inside a real terminal (tmux)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gateway.broker import LocalBroker
from gateway.watch import GatewayView, fmt_duration, fmt_num
from tests.mqtt_helpers import REPO, publish_all, write_config

PREFIX = "edge/gw-watch"


def metrics(ts: float, processed: int, depth: int = 2) -> bytes:
    return json.dumps({
        "v": 1, "ts": ts, "gateway": "gw-watch", "uptime_s": 3725.0,
        "process": {"rss_mb": 81.5, "cpu_percent": 12.5},
        "mqtt": {"connected": True},
        "pipelines": {
            "maintenance": {"in": processed, "processed": processed, "out": processed // 10, "rejected": 0, "dropped": 0,
                            "errors": 0, "latency_ms": {"p50": 0.8, "p95": 2.5}, "queue": {"depth": depth, "size": 10000}},
            "traffic": {"in": 50, "processed": 50, "out": 7, "rejected": 0, "dropped": 3, "errors": 0,
                        "latency_ms": {"p50": 40.0, "p95": 71.0}, "queue": {"depth": 1, "size": 8}},
        },
    }).encode()  # fmt: skip


def samples(ts: float) -> list[tuple[str, bytes]]:
    info = {"v": 1, "gateway": "gw-watch", "version": "1.2.3",
            "pipelines": [{"name": "maintenance", "plugin": "predictive_maintenance"},
                          {"name": "traffic", "plugin": "traffic_counting"}]}  # fmt: skip

    def state(pipeline: str, plugin: str, key: str | None, data: dict[str, object]) -> tuple[str, bytes]:
        topic = f"{PREFIX}/{pipeline}/state" + (f"/{key}" if key else "")
        doc = {
            "v": 1,
            "ts": ts,
            "gateway": "gw-watch",
            "pipeline": pipeline,
            "plugin": plugin,
            "key": key,
            "data": data,
        }
        return topic, json.dumps(doc).encode()

    return [
        (f"{PREFIX}/status", b"online"),
        (f"{PREFIX}/info", json.dumps(info).encode()),
        (f"{PREFIX}/metrics", metrics(ts, 1000)),
        state("maintenance", "predictive_maintenance", "pump1", {"health": 92.0, "rul_h": 800.0, "alarm": False}),
        state("maintenance", "predictive_maintenance", "pump2", {"health": 31.5, "rul_h": 12.0, "alarm": True}),
        state("traffic", "traffic_counting", None, {"counts": {"north": {"car": {"in": 12, "out": 9}}}}),
    ]


def event_sample(ts: float) -> tuple[str, bytes]:
    doc = {"v": 1, "id": "x", "ts": ts, "gateway": "gw-watch", "pipeline": "maintenance",
           "plugin": "predictive_maintenance", "model": None, "type": "alarm_raised", "data": {"machine": "pump2"}}  # fmt: skip
    return f"{PREFIX}/maintenance/event", json.dumps(doc).encode()


def error_sample(ts: float) -> tuple[str, bytes]:
    doc = {"v": 1, "id": "e", "ts": ts, "gateway": "gw-watch", "pipeline": "traffic", "topic": "cam/1",
           "reason": "payload is not a JPEG", "size": 12}  # fmt: skip
    return f"{PREFIX}/errors", json.dumps(doc).encode()


def test_formatting() -> None:
    assert fmt_num(3) == "3" and fmt_num(2.5) == "2.50" and fmt_num(0.01234) == "0.0123" and fmt_num(None) == "-"
    assert fmt_duration(3725) == "1h02m" and fmt_duration(59) == "59s"


def test_view_shows_rates_health_alarms_backlog_events_and_errors() -> None:
    view = GatewayView(PREFIX)
    now = 1_700_000_000.0
    for topic, payload in [*samples(now), event_sample(now), error_sample(now)]:
        view.feed(topic, payload, now)
    view.feed(f"{PREFIX}/metrics", metrics(now + 2.0, 1200, depth=6000), now + 2.0)
    view.feed("other/topic", b"ignored", now)
    text = "\n".join(view.render(width=160, now=now + 3.0))
    assert "ONLINE" in text and "v1.2.3" in text and "up 1h02m" in text and "rss 81.5 MB" in text
    row = next(line for line in text.splitlines() if line.startswith("maintenance "))
    assert "predictive_maintenance" in row and " 100.0 " in row  # (1200 - 1000) / 2 s
    assert "6000/10000" in row  # backlog
    assert "health=31.5" in text and "rul_h=12.0" in text
    assert "ALARMS (1): maintenance/pump2" in text
    assert "counts.north.car.in=12" in text
    assert "alarm_raised machine=pump2" in text and "events: alarm_raised=1" in text
    assert "errors: 1" in text and "traffic: payload is not a JPEG" in text
    assert all(len(line) <= 160 for line in text.splitlines())


def test_watch_once_against_a_real_broker(broker: LocalBroker, tmp_path: Path) -> None:
    now = time.time()
    publish_all(broker.host, broker.port, samples(now), retain=True)
    config = write_config(
        tmp_path / "gateway.yaml",
        {"gateway_id": "gw-watch", "mqtt": {"host": broker.host, "port": broker.port}},
    )
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "watch", "-c", str(config), "--once", "--wait", "10"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "ONLINE" in run.stdout and "maintenance" in run.stdout and "traffic_counting" in run.stdout
    assert "ALARMS (1): maintenance/pump2" in run.stdout
    assert "\x1b[" not in run.stdout  # plain text when not a terminal

    nothing = subprocess.run(
        [sys.executable, "-m", "gateway", "watch", "--host", broker.host, "--port", str(broker.port),
         "--prefix", "edge/nobody", "--once", "--wait", "1"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert nothing.returncode == 1 and "no messages" in nothing.stderr


def test_live_view_redraws_in_place_in_a_terminal(broker: LocalBroker) -> None:
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    now = time.time()
    publish_all(broker.host, broker.port, samples(now), retain=True)
    session = f"watch-{uuid.uuid4().hex[:8]}"
    socket = f"edge-watch-test-{session}"
    cmd = (f"{sys.executable} -m gateway watch --host {broker.host} --port {broker.port} --prefix {PREFIX}"
           f" --duration 8 --interval 0.2; sleep 5")  # fmt: skip

    def pane() -> str:
        out = subprocess.run([tmux, "-L", socket, "capture-pane", "-p", "-t", session], capture_output=True, text=True)
        return out.stdout

    subprocess.run(
        [tmux, "-L", socket, "new-session", "-d", "-s", session, "-x", "150", "-y", "45", "-c", str(REPO), cmd],
        check=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "ALARMS" not in pane():
            time.sleep(0.2)
        first = pane()
        assert "ALARMS (1): maintenance/pump2" in first
        publish_all(broker.host, broker.port, [(f"{PREFIX}/metrics", metrics(now + 1.0, 1500))], retain=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and " 500.0 " not in pane():
            time.sleep(0.2)
        second = pane()
        row = next(line for line in second.splitlines() if line.startswith("maintenance "))
        assert " 500.0 " in row  # (1500 - 1000) / 1 s: the rate was recomputed and redrawn
        assert second.count("edge-gateway edge/gw-watch") == 1  # redrawn in place, not scrolled
        assert second.splitlines()[0].startswith("edge-gateway edge/gw-watch")
    finally:
        subprocess.run([tmux, "-L", socket, "kill-server"], capture_output=True)


def test_an_active_anomaly_series_counts_as_an_alarm() -> None:
    view = GatewayView(PREFIX)
    doc = {"v": 1, "ts": 1.0, "gateway": "gw-watch", "pipeline": "anomalies", "plugin": "anomaly_detection",
           "key": "temp_1", "data": {"series": "temp_1", "score": 7.5, "active": True, "learning": False}}  # fmt: skip
    view.feed(f"{PREFIX}/anomalies/state/temp_1", json.dumps(doc).encode())
    text = "\n".join(view.render(width=150))
    assert "ALARMS (1): anomalies/temp_1" in text and "score=7.50" in text
    view.feed(f"{PREFIX}/anomalies/state/temp_1", b"")  # retained state cleared
    assert "alarms: none" in "\n".join(view.render(width=150))
