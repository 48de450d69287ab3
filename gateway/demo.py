"""``edge-gateway demo``: the whole product on one machine, with nothing to download.

It starts a local Mosquitto if none answers at the config's broker address, the gateway with
``config/demo.yaml`` (traffic counting, predictive maintenance and anomaly detection), and simulated
publishers — a road camera, pump rigs (one develops a fault after a while) and plant sensors with
injected anomalies — then shows the live view (``edge-gateway watch``) until Ctrl-C or ``--duration``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.broker import LocalBroker, mosquitto_binary, port_open

log = logging.getLogger(__name__)
DEMO_CONFIG = Path("config/demo.yaml")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class Simulator(Protocol):
    period_s: float

    def messages(self, now: float) -> list[tuple[str, bytes]]: ...


class SimulatedPublisher:
    """Publishes a simulator's messages under ``base`` every ``period_s`` on its own thread."""

    def __init__(
        self,
        client: paho.Client,
        base: str,
        sim: Simulator,
        qos: int = 1,
        on_tick: Callable[[float], None] | None = None,
    ) -> None:
        self.client = client
        self.base = base.rstrip("/")
        self.sim = sim
        self.qos = qos
        self.sent = 0
        self._on_tick = on_tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.base}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic()
        started = time.time()
        while not self._stop.is_set():
            now = time.time()
            if self._on_tick is not None:
                self._on_tick(now - started)
            for suffix, payload in self.sim.messages(now):
                self.client.publish(f"{self.base}/{suffix}", payload, qos=self.qos)
                self.sent += 1
            next_at += self.sim.period_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def build_simulators(client: paho.Client, speedup: float) -> list[SimulatedPublisher]:
    """The demo's publishers: camera frames, pump readings (with a fault after a while), plant sensors."""
    from plugins.anomaly_detection.simulator import SensorSimulator
    from plugins.predictive_maintenance.simulator import MachineSimulator
    from plugins.traffic_counting.simulator import CameraSimulator

    pumps = MachineSimulator(machines=("pump-1", "pump-2"), period_s=1.0 / speedup, seed=7)
    fault = {"on": False, "off": False}

    def fault_script(elapsed: float) -> None:
        # pump-2 develops cavitation after the learning period, then it is repaired.
        if not fault["on"] and elapsed > 150 / speedup:
            pumps.start_fault("pump-2", "cavitation", severity=1.0, ramp_s=20.0)
            fault["on"] = True
        if fault["on"] and not fault["off"] and elapsed > 330 / speedup:
            pumps.stop_faults("pump-2")
            fault["off"] = True

    sensors = SensorSimulator(
        machines=3, period_s=1.0 / speedup, cycle_s=600.0 / speedup, seed=3, quiet_s=120.0 / speedup
    )
    camera = CameraSimulator(camera="cam1", fps=5.0, preset="busy", seed=1, payload="json")  # names the camera
    return [
        SimulatedPublisher(client, "demo/cameras", camera, qos=0),
        SimulatedPublisher(client, "demo/machines", pumps, on_tick=fault_script),
        SimulatedPublisher(client, "demo/sensors", sensors),
    ]


def ensure_broker(host: str, port: int, workdir: Path) -> LocalBroker | None:
    """A broker at host:port: the one already there, or a private Mosquitto started for the demo."""
    if port_open(host, port):
        print(f"demo: using the broker already listening on {host}:{port}")
        return None
    if host not in LOCAL_HOSTS:
        raise SystemExit(f"demo: no broker answers at {host}:{port}, and it is not a local address to start one on")
    if mosquitto_binary() is None:
        raise SystemExit(
            "demo: mosquitto is not installed and no broker is running. Install it "
            "(Debian/Ubuntu/Raspberry Pi OS: sudo apt-get install mosquitto) or run scripts/demo.sh."
        )
    broker = LocalBroker(port, workdir=workdir).start()
    print(f"demo: started mosquitto on {host}:{port} (data in {workdir})")
    return broker


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.cli import load_or_report
    from gateway.watch import WatchTarget, watch

    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    data = cfg.resolve(cfg.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    broker = ensure_broker(cfg.mqtt.host, cfg.mqtt.port, data / "broker")
    log_path = data / "gateway.log"
    with open(log_path, "ab") as out:
        gw = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(args.config)], stdout=out, stderr=out)
    print(f"demo: gateway started (pid {gw.pid}); its log: {log_path}")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=paho.MQTTv5)
    client.max_queued_messages_set(1000)
    client.connect(cfg.mqtt.host if cfg.mqtt.host != "localhost" else "127.0.0.1", cfg.mqtt.port)
    client.loop_start()
    sims = build_simulators(client, args.speedup)
    for s in sims:
        s.start()
    print("demo: simulators publishing on demo/cameras, demo/machines, demo/sensors")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rc = 0
    try:
        if args.no_watch:
            stop.wait(args.duration)
        else:
            target = WatchTarget(prefix=cfg.topic_prefix, mqtt=cfg.mqtt, base_dir=cfg.base_dir)
            rc = watch(target, duration=args.duration, interval=1.0)
    except KeyboardInterrupt:
        pass
    finally:
        for s in sims:
            s.stop()
        client.disconnect()
        client.loop_stop()
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(30)
        except subprocess.TimeoutExpired:
            gw.kill()
        if broker is not None:
            broker.stop()
        print(
            f"demo: stopped (gateway exit code {gw.returncode}); sent " + ", ".join(f"{s.base}: {s.sent}" for s in sims)
        )
    return rc


def register_cli(subparsers: Any) -> None:
    """Add ``demo`` to the ``edge-gateway`` command."""
    p = subparsers.add_parser(
        "demo",
        help="run the demo: local broker, gateway, simulated camera and sensors, live view",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", type=Path, default=DEMO_CONFIG, help=f"demo config (default: {DEMO_CONFIG})")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--no-watch", action="store_true", help="no live view (for scripts); needs --duration")
    p.add_argument(
        "--speedup",
        type=float,
        default=5.0,
        help="sensor simulators publish this many times a second instead of once, so learning periods and "
        "the simulated pump fault come sooner (default 5)",
    )
    p.set_defaults(func=cmd_demo)
