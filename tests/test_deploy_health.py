"""The heartbeat file and ``edge-gateway health``: the signal behind the container HEALTHCHECK."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.broker import LocalBroker
from gateway.health import (
    EXIT_HEALTHY,
    EXIT_UNHEALTHY,
    HEARTBEAT_FILE,
    HeartbeatFile,
    assess,
    check,
    heartbeat_path,
    register_cli,
)

REPO = Path(__file__).resolve().parents[1]


class Clock:
    """A settable clock for the writer."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_fresh_heartbeat_with_the_link_up_and_live_workers_is_healthy(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    beat = HeartbeatFile(tmp_path / HEARTBEAT_FILE, interval_s=10, clock=clock)
    beat.beat(True, {"traffic": True, "pumps": True})
    report = check(tmp_path / HEARTBEAT_FILE, now=1005.0)
    assert report.healthy, report
    assert str(report) == "healthy: heartbeat 5 s old, mqtt connected, 2/2 pipeline(s) alive"


def test_a_stale_heartbeat_means_a_stuck_or_dead_gateway(tmp_path: Path) -> None:
    beat = HeartbeatFile(tmp_path / HEARTBEAT_FILE, interval_s=10, clock=Clock(1000.0))
    beat.beat(True, {"traffic": True})
    assert check(tmp_path / HEARTBEAT_FILE, now=1029.0).healthy  # 3 intervals, at least 30 s
    report = check(tmp_path / HEARTBEAT_FILE, now=1031.0)
    assert not report.healthy and "31 s old (limit 30 s)" in str(report)
    # A slower metrics interval stretches the limit; --max-age overrides it.
    HeartbeatFile(tmp_path / HEARTBEAT_FILE, interval_s=60, clock=Clock(1000.0)).beat(True, {})
    assert check(tmp_path / HEARTBEAT_FILE, now=1170.0).healthy
    assert not check(tmp_path / HEARTBEAT_FILE, now=1170.0, max_age_s=60).healthy


def test_a_dead_pipeline_worker_is_unhealthy_and_named(tmp_path: Path) -> None:
    HeartbeatFile(tmp_path / HEARTBEAT_FILE, 10, clock=Clock(0.0)).beat(True, {"traffic": False, "pumps": True})
    report = check(tmp_path / HEARTBEAT_FILE, now=1.0)
    assert not report.healthy
    assert report.problems == ("pipeline worker(s) not running: traffic",)


def test_a_short_broker_outage_is_tolerated_a_long_one_is_not(tmp_path: Path) -> None:
    clock = Clock(0.0)
    beat = HeartbeatFile(tmp_path / HEARTBEAT_FILE, 10, clock=clock)
    beat.beat(True, {})
    clock.now = 100.0
    beat.beat(False, {})  # the link went down at 100
    clock.now = 200.0
    doc = beat.beat(False, {})
    assert doc["mqtt"] == {"connected": False, "since": 100.0}
    assert check(tmp_path / HEARTBEAT_FILE, now=205.0, max_disconnected_s=120).healthy
    report = check(tmp_path / HEARTBEAT_FILE, now=225.0, max_disconnected_s=120)
    assert report.problems == ("the MQTT link has been down for 125 s (limit 120 s)",)
    clock.now = 230.0
    beat.beat(True, {})
    assert check(tmp_path / HEARTBEAT_FILE, now=231.0).healthy


def test_missing_corrupt_foreign_and_stopped_heartbeats_are_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / HEARTBEAT_FILE
    assert "has not started" in str(check(path))
    path.write_text("{not json")
    assert "not valid JSON" in str(check(path))
    path.write_text('{"hello": 1}')
    assert "not a gateway heartbeat" in str(check(path))
    beat = HeartbeatFile(path, 10)
    beat.beat(True, {})
    beat.stopped()
    assert check(path).problems == ("the gateway has stopped",)
    assert not assess([], now=0).healthy


def test_readers_never_see_a_half_written_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / HEARTBEAT_FILE
    beat = HeartbeatFile(path, 10)
    beat.beat(True, {f"p{i}": True for i in range(50)})
    done = threading.Event()

    def writer() -> None:
        for _ in range(100):
            beat.beat(True, {f"p{i}": True for i in range(50)})
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    reads = 0
    while not done.is_set():
        assert json.loads(path.read_text())["state"] == "running"
        reads += 1
    t.join()
    assert reads > 0
    assert [p.name for p in tmp_path.iterdir()] == [HEARTBEAT_FILE]  # no temporary files left behind


def test_the_heartbeat_is_found_from_the_flag_the_environment_or_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGE_GATEWAY_DATA_DIR", raising=False)
    config = tmp_path / "conf" / "gateway.yaml"
    config.parent.mkdir()
    config.write_text("gateway_id: g1\ndata_dir: state\n")
    assert heartbeat_path(config=config) == tmp_path / "conf" / "state" / HEARTBEAT_FILE
    monkeypatch.setenv("EDGE_GATEWAY_DATA_DIR", str(tmp_path / "env"))
    assert heartbeat_path(config=config) == tmp_path / "env" / HEARTBEAT_FILE
    assert heartbeat_path(file=tmp_path / "x.json", config=config) == tmp_path / "x.json"


def _run_module(args: list[str], env_data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EDGE_GATEWAY_DATA_DIR=str(env_data_dir), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "gateway.health", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_python_dash_m_exits_as_dockers_healthcheck_expects(tmp_path: Path) -> None:
    run = _run_module([], tmp_path)
    assert run.returncode == EXIT_UNHEALTHY and run.stdout.startswith("unhealthy: no heartbeat")
    HeartbeatFile(tmp_path / HEARTBEAT_FILE, 10).beat(True, {"traffic": True})
    run = _run_module(["--json"], tmp_path)
    assert run.returncode == EXIT_HEALTHY, run.stdout + run.stderr
    verdict = json.loads(run.stdout)
    assert verdict["healthy"] is True and verdict["problems"] == []


def test_the_health_subcommand_plugs_into_a_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="edge-gateway")
    register_cli(parser.add_subparsers(dest="command"))
    HeartbeatFile(tmp_path / HEARTBEAT_FILE, 10).beat(False, {})
    args = parser.parse_args(["health", "--file", str(tmp_path / HEARTBEAT_FILE), "--max-disconnected", "0"])
    assert args.func(args) == EXIT_UNHEALTHY
    assert "MQTT link has been down" in capsys.readouterr().out


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_running_gateway_is_healthy_until_its_broker_dies_and_reports_its_stop(
    broker: LocalBroker, tmp_path: Path
) -> None:
    if "HeartbeatFile" not in (REPO / "gateway" / "app.py").read_text():
        pytest.skip("the gateway does not write its heartbeat yet (gateway/app.py)")
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "gateway_id: health-e2e\n"
        f"data_dir: {tmp_path / 'data'}\n"
        f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n"
        "metrics:\n  interval_s: 0.5\n"
        "pipelines:\n  - name: p1\n    plugin: passthrough\n    inputs: ['sensors/#']\n"
    )
    heartbeat = tmp_path / "data" / HEARTBEAT_FILE
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_GATEWAY_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(lambda: check(heartbeat).healthy, 30), str(check(heartbeat))
        assert "mqtt connected, 1/1 pipeline(s) alive" in str(check(heartbeat))
        broker.kill()
        assert _wait_for(lambda: not check(heartbeat, max_disconnected_s=1.0).healthy, 15)
        assert "MQTT link has been down" in str(check(heartbeat, max_disconnected_s=1.0))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert check(heartbeat).problems == ("the gateway has stopped",)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
