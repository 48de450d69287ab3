"""The demo a newcomer runs first: broker, gateway, simulators, and results from all three pipelines."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gateway.broker import free_port, mosquitto_binary, port_open
from tests.mqtt_helpers import REPO, Collector


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto is not installed (apt-get install mosquitto)")
def test_demo_runs_all_three_pipelines_end_to_end(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    port = free_port()
    doc["mqtt"]["port"] = port
    doc["data_dir"] = str(tmp_path / "data")
    for model in doc["models"].values():  # the demo config sits in config/; this copy does not
        if not model["path"].startswith("pkg://"):
            model["path"] = str(REPO / "config" / model["path"])
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump(doc))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "-c", str(cfg), "--duration", "45", "--no-watch", "--speedup", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.1)
        col = Collector("127.0.0.1", port, ["edge/demo/#"])
        prefix = "edge/demo"

        def seen(suffix: str) -> bool:
            return any(t.startswith(f"{prefix}/{suffix}") for t, _p, _r in col.messages)

        assert col.wait_for(lambda: seen("traffic/state") and seen("machines/state") and seen("sensors/state"), 60), (
            sorted({t for t, _p, _r in col.messages})[:40]
        )
        assert col.wait_for(lambda: seen("traffic/event"), 30), "no vehicle crossed the counting line"
        crossing = json.loads(col.on_topic(f"{prefix}/traffic/event")[0])
        assert crossing["type"] == "line_crossing" and crossing["model"]["name"]

        def all_processing() -> bool:
            docs = col.json_on(f"{prefix}/metrics")
            return bool(docs) and all(
                docs[-1]["pipelines"][n]["processed"] > 0 for n in ("traffic", "machines", "sensors")
            )

        assert col.wait_for(all_processing, 20), col.json_on(f"{prefix}/metrics")[-1:]
        metrics = col.json_on(f"{prefix}/metrics")[-1]
        for name in ("traffic", "machines", "sensors"):
            p = metrics["pipelines"][name]
            assert p["errors"] == 0 and p["rejected"] == 0, (name, p)
    finally:
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "demo: stopped (gateway exit code 0)" in out
