"""End to end over a real Mosquitto: simulated series with an injected anomaly -> anomaly events; restart keeps
what was learned."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.broker import LocalBroker
from gateway.config import load_config
from tests.mqtt_helpers import Collector, base_config, publish_all, write_config

PREFIX = "edge/gw-test"
T0 = 1_700_000_000.0
LEARN = 500
PERIOD = 50  # samples per cycle of the simulated daily pattern


def sample(t: int, anomaly: bool = False) -> float:
    """A periodic signal with a little deterministic noise; an anomaly is a large jump."""
    value = 50.0 + 10.0 * math.sin(2 * math.pi * t / PERIOD) + 0.5 * math.sin(t * 1.7)
    return value + (40.0 if anomaly else 0.0)


def publish(broker: LocalBroker, start: int, end: int, anomalous: range = range(0)) -> None:
    items = [
        (
            "plant/boiler",
            json.dumps({"ts": T0 + t, "source": "boiler", "values": {"temp": sample(t, t in anomalous)}}).encode(),
        )
        for t in range(start, end)
    ]
    publish_all(broker.host, broker.port, items)


def test_anomaly_events_over_mqtt_and_restart_keeps_the_learned_state(broker: LocalBroker, tmp_path: Path) -> None:
    doc: dict[str, Any] = base_config(
        broker.port,
        pipelines=[
            {
                "name": "anomaly",
                "plugin": "anomaly_detection",
                "inputs": ["plant/#"],
                "summary_interval_s": 1,
                "options": {"learning_samples": LEARN, "state_interval_s": 0, "model": "forecaster"},
            }
        ],
        models={"forecaster": {"path": "pkg://plugins.anomaly_detection/models/anomaly_forecaster_int8.tflite"}},
    )
    config = write_config(tmp_path / "gateway.yaml", doc)
    col = Collector(broker.host, broker.port, [f"{PREFIX}/#"])
    gw = Gateway(load_config(config))
    gw.start()
    try:
        assert col.wait_for(lambda: b"online" in col.on_topic(f"{PREFIX}/status"), 20)
        publish(broker, 0, 3 * PERIOD + LEARN)  # learning, then clean cycles
        assert col.wait_for(
            lambda: any(not s["data"]["learning"] for s in col.json_on("/anomaly/state/boiler/temp")), 20
        ), "learning period never completed"
        assert col.json_on("/anomaly/event") == [], "a clean periodic series raised an anomaly"
    finally:
        gw.stop()

    states_before = len(col.on_topic(f"{PREFIX}/anomaly/state/boiler/temp"))
    gw = Gateway(load_config(config))  # restart: the series' state comes back from the state store
    gw.start()
    try:
        start = 3 * PERIOD + LEARN
        publish(broker, start, start + 150, anomalous=range(start + 50, start + 58))
        assert col.wait_for(
            lambda: {"anomaly_start", "anomaly_end"} <= {e["type"] for e in col.json_on("/anomaly/event")}, 20
        )
        col.wait_count("/anomaly/summary", 1, 5)
    finally:
        gw.stop()

    after = [json.loads(p) for p in col.on_topic(f"{PREFIX}/anomaly/state/boiler/temp")[states_before:]]
    assert after and all(not s["data"]["learning"] for s in after), "the restart started a new learning period"
    events = col.json_on("/anomaly/event")
    starts = [e for e in events if e["type"] == "anomaly_start"]
    assert len(starts) == 1
    start_event = starts[0]
    assert start_event["data"]["series"] == "boiler/temp"
    assert T0 + start + 50 <= start_event["ts"] <= T0 + start + 58
    assert start_event["data"]["value"] > start_event["data"]["expected_high"]
    assert start_event["model"]["name"]  # the int8 forecaster took part
    col.close()
