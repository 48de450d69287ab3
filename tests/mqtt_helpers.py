"""Test helpers: a collecting MQTT subscriber and a gateway run as a real process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


class Collector:
    """Subscribes to filters and records every message (topic, payload, retain) in arrival order."""

    def __init__(self, host: str, port: int, filters: list[str], client_id: str = "", qos: int = 1) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe([(f, qos) for f in filters])
        self.client.connect(host, port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("subscription not acknowledged")

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self._cond.notify_all()

    def matching(self, pred: Callable[[str, bytes], bool]) -> list[tuple[str, bytes, bool]]:
        with self._cond:
            return [m for m in self.messages if pred(m[0], m[1])]

    def on_topic(self, suffix: str) -> list[bytes]:
        return [p for t, p, _ in self.matching(lambda t, _p: t.endswith(suffix))]

    def json_on(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.on_topic(suffix)]

    def wait_for(self, pred: Callable[[], bool], timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
        return True

    def wait_count(self, suffix: str, n: int, timeout: float = 15.0) -> list[bytes]:
        self.wait_for(lambda: len([1 for t, _p, _r in self.messages if t.endswith(suffix)]) >= n, timeout)
        return self.on_topic(suffix)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(host: str, port: int, items: list[tuple[str, bytes]], qos: int = 1, retain: bool = False) -> None:
    """Publish items and wait until the broker acknowledged every one."""
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.connect(host, port)
    c.loop_start()
    infos = [c.publish(t, p, qos=qos, retain=retain) for t, p in items]
    for info in infos:
        info.wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def write_config(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def base_config(port: int, gateway_id: str = "gw-test", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "gateway_id": gateway_id,
        "data_dir": "data",
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0, "keepalive_s": 5},
        "metrics": {"interval_s": 1.0},
        "drain_timeout_s": 5,
        "pipelines": [],
    }
    doc.update(extra)
    return doc


class GatewayProcess:
    """``python -m gateway run -c <config>`` as a child process, with its output captured to a file."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = config.with_suffix(".log")
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        self._offset = self.log.stat().st_size if self.log.exists() else 0  # this run's output only
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(self.config)],
                stdout=out,
                stderr=out,
                env=self.env,
                cwd=str(self.config.parent),
            )
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def wait_started(self, timeout: float = 20.0) -> bool:
        """Until the gateway logged that it started (signal handlers are installed by then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = re.search(r"gateway \S+ started:", self.output()) is not None  # text or JSON logs
            if started or (self.proc is not None and self.proc.poll() is not None):
                return started
            time.sleep(0.05)
        return False

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.wait_started()
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        """What this run wrote (a restarted gateway appends to the same log)."""
        if not self.log.exists():
            return ""
        with open(self.log, "rb") as f:
            f.seek(getattr(self, "_offset", 0))
            return f.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def run_openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_test_pki(d: Path) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate, made by openssl.

    Keys of the result: ``ca_crt``, ``server_crt``, ``server_key``, ``client_crt``, ``client_key``.
    """
    d.mkdir(parents=True, exist_ok=True)
    run_openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=edge-test-ca", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run_openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        run_openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext", cwd=d)  # fmt: skip
    return {name.replace(".", "_"): d / name for name in
            ("ca.crt", "server.crt", "server.key", "client.crt", "client.key")}  # fmt: skip
