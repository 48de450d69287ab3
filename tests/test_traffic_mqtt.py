"""End to end over a real Mosquitto: the camera simulator's frames -> gateway (demo detector) -> counts that
match the scene's ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from gateway.app import Gateway
from gateway.broker import LocalBroker
from gateway.config import load_config
from plugins.traffic_counting.scenes import vertical_line
from plugins.traffic_counting.simulator import CameraSimulator
from tests.mqtt_helpers import REPO, Collector, base_config, publish_all, write_config

PREFIX = "edge/gw-test"
T0 = 1_700_000_000.0
FPS = 5.0


def demo_traffic_pipeline() -> tuple[dict[str, Any], dict[str, Any]]:
    """The traffic model and pipeline exactly as the demo config declares them."""
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    pipeline = next(p for p in demo["pipelines"] if p["plugin"] == "traffic_counting")
    return demo["models"], pipeline


def test_clean_scene_counts_match_the_ground_truth(broker: LocalBroker, tmp_path: Path) -> None:
    """Every crossing is counted once, in the right direction and with the right class."""
    models, pipeline = demo_traffic_pipeline()
    pipeline = {**pipeline, "inputs": ["cams/+/frame"], "queue": {"size": 10_000, "policy": "block"}}
    config = write_config(tmp_path / "gateway.yaml", base_config(broker.port, models=models, pipelines=[pipeline]))
    sim = CameraSimulator("cam1", fps=FPS, preset="clean", seed=5, payload="json")
    (x1, _), (x2, _) = pipeline["options"]["lines"][0]["points"]
    truth_line = vertical_line(sim.scene.config, fraction=x1 / sim.scene.config.width, name="gate")
    col = Collector(broker.host, broker.port, [f"{PREFIX}/#"])
    gw = Gateway(load_config(config))
    gw.start()
    try:
        assert col.wait_for(lambda: b"online" in col.on_topic(f"{PREFIX}/status"), 20)
        frames = []
        for k in range(int(90 * FPS)):  # 90 s of scene time
            frames.extend((f"cams/{suffix}", payload) for suffix, payload in sim.messages(T0 + k / FPS))
        publish_all(broker.host, broker.port, frames)
        p = gw.pipelines[0]
        assert col.wait_for(lambda: p.counters.processed >= len(frames), 120)
        truth = sim.counts(truth_line)
        total = sum(n for by_dir in truth.values() for n in by_dir.values())
        col.wait_count(f"{pipeline['name']}/event", total, 20)  # events go out through the store
    finally:
        gw.stop()
    assert sum(n for by_dir in truth.values() for n in by_dir.values()) >= 20, truth  # a meaningful sample
    state = col.json_on(f"{PREFIX}/{pipeline['name']}/state/cam1")[-1]["data"]
    counted = state["lines"]["gate"]
    names = {"in": pipeline["options"]["lines"][0]["in_name"], "out": pipeline["options"]["lines"][0]["out_name"]}
    expected = {label: {names[d]: n for d, n in by_dir.items() if n} for label, by_dir in truth.items()}
    expected = {label: by_dir for label, by_dir in expected.items() if by_dir}
    got = {label: {d: n for d, n in by_dir.items() if n} for label, by_dir in counted.items()}
    got = {label: by_dir for label, by_dir in got.items() if by_dir}
    assert got == expected
    events = col.json_on(f"{PREFIX}/{pipeline['name']}/event")
    assert len(events) == sum(n for by_dir in truth.values() for n in by_dir.values())
    assert all(e["type"] == "line_crossing" and e["data"]["line"] == "gate" for e in events)
    assert x1 == x2  # the ground-truth line above is vertical like the configured one
    col.close()
    json.dumps(state)  # the state is plain JSON
