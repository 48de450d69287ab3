"""Home Assistant discovery: entities from pipeline state, templates that read real payloads, and a real broker."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from gateway.broker import LocalBroker
from gateway.config import MqttConfig
from gateway.integrations import IntegrationContext, PipelineDescription
from gateway.integrations.client import IntegrationLink
from gateway.integrations.config import HomeAssistantConfig
from gateway.integrations.homeassistant import (
    EntitySpec,
    HomeAssistantDiscovery,
    declared_entities,
    describe_field,
    slug,
)
from gateway.messages import Event, Output, State
from gateway.publisher import DirectSink, Publisher, Source
from tests.mqtt_helpers import Collector, publish_all
from tests.test_homeassistant_schema import problems

GATEWAY = "gw-ha"
PREFIX = f"edge/{GATEWAY}"
DEMO_PIPELINES = (
    PipelineDescription("traffic", "traffic_counting"),
    PipelineDescription("maintenance", "predictive_maintenance"),
    PipelineDescription("anomalies", "anomaly_detection"),
)


def demo_outputs() -> dict[str, list[Output]]:
    """States and events shaped like the bundled plugins' outputs."""
    return {
        "traffic": [
            State(
                {
                    "camera": "cam1",
                    "lines": {"north": {"car": {"in": 3, "out": 1}, "truck": {"in": 0, "out": 1}}},
                    "zones": {"parking": {"occupancy": 2, "by_class": {"car": 2}}},
                },
                key="cam1",
            ),
            State(
                {
                    "camera": "cam1",
                    "state": "streaming",
                    "frames": 120,
                    "failures": 0,
                    "retry_in_s": None,
                    "error": None,
                },
                key="source/cam1",
            ),  # fmt: skip
            Event("line_crossing", {"line": "north", "class": "car", "direction": "in"}),
        ],
        "maintenance": [
            State({"health": 87.5, "rul_h": 420.0, "alarm": False, "ts": 1.0}, key="pump1"),
            State({"health": 35.0, "rul_h": 12.0, "alarm": True, "ts": 1.0}, key="pump2"),
            Event("alarm_raised", {"machine": "pump2"}),
        ],
        "anomalies": [
            State(
                {
                    "series": "temp_1",
                    "score": 0.12,
                    "value": 3.2,
                    "expected_low": 2.0,
                    "expected_high": 4.0,
                    "signal": None,
                    "ts": 1.0,
                    "active": False,
                    "learning": False,
                },
                key="temp_1",
            ),  # fmt: skip
            Event("anomaly_start", {"series": "temp_1"}),
        ],
    }


def demo_discovery(
    pipelines: tuple[PipelineDescription, ...] = DEMO_PIPELINES,
) -> tuple[HomeAssistantDiscovery, list[tuple[str, bytes, int, bool]]]:
    published: list[tuple[str, bytes, int, bool]] = []
    ctx = IntegrationContext(GATEWAY, PREFIX, lambda *m: published.append(m), pipelines, version="1.2.3")
    ha = HomeAssistantDiscovery(HomeAssistantConfig(enabled=True), ctx)
    outputs = demo_outputs()
    for p in pipelines:
        ha.on_outputs(p.name, p.plugin, outputs[p.name])
    return ha, published


EXPECTED_STATE_ENTITIES = {
    "sensor/gw-ha/traffic_cam1_lines_north_car_in",
    "sensor/gw-ha/traffic_cam1_lines_north_car_out",
    "sensor/gw-ha/traffic_cam1_lines_north_truck_in",
    "sensor/gw-ha/traffic_cam1_lines_north_truck_out",
    "sensor/gw-ha/traffic_cam1_zones_parking_occupancy",
    "sensor/gw-ha/traffic_cam1_zones_parking_by_class_car",
    "sensor/gw-ha/traffic_source_cam1_state",
    "sensor/gw-ha/traffic_source_cam1_frames",
    "sensor/gw-ha/maintenance_pump1_health",
    "sensor/gw-ha/maintenance_pump1_rul_h",
    "binary_sensor/gw-ha/maintenance_pump1_alarm",
    "sensor/gw-ha/maintenance_pump2_health",
    "sensor/gw-ha/maintenance_pump2_rul_h",
    "binary_sensor/gw-ha/maintenance_pump2_alarm",
    "sensor/gw-ha/anomalies_temp_1_score",
    "binary_sensor/gw-ha/anomalies_temp_1_active",
    "sensor/gw-ha/anomalies_temp_1_value",
    "event/gw-ha/maintenance_events",
    "event/gw-ha/anomalies_events",
}


def _short(topic: str) -> str:
    return topic.removeprefix("homeassistant/").removesuffix("/config")


def test_field_names_choose_units_and_classes() -> None:
    health = describe_field(("health",), 90.0)
    assert health is not None and health.unit == "%" and health.state_class == "measurement"
    rul = describe_field(("rul_h",), 10.0)
    assert rul is not None and rul.unit == "h" and rul.device_class == "duration"
    alarm = describe_field(("alarm",), True)
    assert alarm is not None and alarm.component == "binary_sensor" and alarm.device_class == "problem"
    count = describe_field(("lines", "north", "car", "in"), 3)
    assert count is not None and count.state_class == "total_increasing"
    assert describe_field(("ts",), 1.0) is None
    assert describe_field(("label",), "text") is None
    assert slug("Line A", "car/in") == "line_a_car_in"


def test_demo_pipelines_give_the_useful_entities() -> None:
    ha, published = demo_discovery()
    names = {_short(t) for t in ha.entities()}
    assert names >= EXPECTED_STATE_ENTITIES
    diagnostics = {n for n, p in ((_short(t), p) for t, p in ha.entities().items()) if p.get("entity_category")}
    assert {
        "sensor/gw-ha/traffic_processed",
        "sensor/gw-ha/maintenance_latency_p95",
        "sensor/gw-ha/memory",
    } <= diagnostics
    # the timestamp field, text fields and the traffic crossing event are not entities
    assert not any(n.endswith(("_ts", "_camera", "_series", "_error", "_signal", "_retry_in_s")) for n in names)
    ents = ha.entities()
    assert ents["homeassistant/binary_sensor/gw-ha/anomalies_temp_1_active/config"]["device_class"] == "problem"
    assert "device_class" not in ents["homeassistant/binary_sensor/gw-ha/anomalies_temp_1_learning/config"]
    assert (
        ents["homeassistant/sensor/gw-ha/traffic_cam1_lines_north_car_in/config"]["state_class"] == "total_increasing"
    )
    assert (
        ents["homeassistant/sensor/gw-ha/traffic_cam1_zones_parking_occupancy/config"]["state_class"] == "measurement"
    )
    assert "event/gw-ha/traffic_events" not in names
    # runtime entities were published retained as they were found
    assert all(retain and qos == 1 for t, _p, qos, retain in published if t.startswith("homeassistant/"))


def test_every_entity_shares_the_gateway_device_and_availability() -> None:
    ha, _ = demo_discovery()
    for payload in ha.entities().values():
        assert payload["device"]["identifiers"] == ["edge_gateway_gw-ha"]
        assert payload["device"]["sw_version"] == "1.2.3"
        assert payload["availability"] == [
            {"topic": f"{PREFIX}/status", "payload_available": "online", "payload_not_available": "offline"}
        ]


def test_value_templates_read_the_published_payloads() -> None:
    """Render each template with Jinja (as Home Assistant does) on the payload the real publisher produces."""
    jinja2 = pytest.importorskip("jinja2", reason="jinja2 renders the templates as Home Assistant does")
    env = jinja2.Environment()
    live: dict[str, bytes] = {}

    class Transport:
        def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
            live[topic] = payload
            return 1

    publisher = Publisher(GATEWAY, PREFIX, DirectSink(Transport()), Transport())
    for p in DEMO_PIPELINES:
        publisher.publish_outputs(Source(p.name, p.plugin, None), demo_outputs()[p.name])
    publisher.metrics({"pipelines": {p.name: {"processed": 7, "errors": 0, "latency_ms": {"p50": 1.0, "p95": 2.5},
                                              "queue": {"depth": 4}} for p in DEMO_PIPELINES},
                       "process": {"rss_mb": 80.5, "cpu_percent": 12.0}})  # fmt: skip
    ha, _ = demo_discovery()
    rendered: dict[str, str] = {}
    for topic, cfg in ha.entities().items():
        payload = live.get(cfg["state_topic"])
        if payload is None:
            continue
        value_json = json.loads(payload)
        rendered[_short(topic)] = env.from_string(cfg["value_template"]).render(value_json=value_json).strip()
    assert rendered["sensor/gw-ha/maintenance_pump2_health"] == "35.0"
    assert rendered["binary_sensor/gw-ha/maintenance_pump2_alarm"] == "ON"
    assert rendered["binary_sensor/gw-ha/maintenance_pump1_alarm"] == "OFF"
    assert rendered["sensor/gw-ha/traffic_cam1_lines_north_car_in"] == "3"
    assert rendered["sensor/gw-ha/traffic_source_cam1_state"] == "streaming"
    assert rendered["binary_sensor/gw-ha/anomalies_temp_1_active"] == "OFF"
    assert rendered["sensor/gw-ha/maintenance_latency_p95"] == "2.5"
    assert rendered["sensor/gw-ha/memory"] == "80.5"
    assert json.loads(rendered["event/gw-ha/maintenance_events"]) == {"event_type": "alarm_raised"}


def test_new_event_type_extends_the_event_entity() -> None:
    ha, published = demo_discovery()
    ha.on_outputs("maintenance", "predictive_maintenance", [Event("sensor_stale", {})])
    topic = "homeassistant/event/gw-ha/maintenance_events/config"
    assert "sensor_stale" in ha.entities()[topic]["event_types"]
    assert json.loads(published[-1][1])["event_types"][-1] == "sensor_stale"


def test_entity_cap_per_pipeline() -> None:
    ctx = IntegrationContext(GATEWAY, PREFIX, lambda *m: None, (PipelineDescription("p", "passthrough"),))
    ha = HomeAssistantDiscovery(HomeAssistantConfig(enabled=True, diagnostics=False, max_entities_per_pipeline=5), ctx)
    ha.on_outputs("p", "passthrough", [State({f"v{i}": float(i) for i in range(20)}, key="s")])
    assert len(ha.entities()) == 5
    assert ha.skipped == {"p": 15}


# -- with a real broker --------------------------------------------------------------------------------
def _run_discovery(
    broker: LocalBroker, pipelines: tuple[PipelineDescription, ...]
) -> tuple[HomeAssistantDiscovery, IntegrationLink]:
    cfg = MqttConfig(host=broker.host, port=broker.port)
    link = IntegrationLink(cfg, f"ha-test-{len(pipelines)}-{time.monotonic_ns()}")
    ctx = IntegrationContext(GATEWAY, PREFIX, link.publish, pipelines, version="1.2.3")
    ha = HomeAssistantDiscovery(HomeAssistantConfig(enabled=True), ctx)
    ha.record_wait_s = 0.5
    link.attach(ha)
    link.start()
    assert link.wait_connected(10)
    link.publish(f"{PREFIX}/status", b"online", 1, True)
    publisher = Publisher(GATEWAY, PREFIX, DirectSink(link), link)
    for p in pipelines:
        outs = demo_outputs()[p.name]
        publisher.publish_outputs(Source(p.name, p.plugin, None), outs)
        ha.on_outputs(p.name, p.plugin, outs)
    return ha, link


def _retained_configs(broker: LocalBroker) -> dict[str, dict[str, Any]]:
    c = Collector(broker.host, broker.port, ["homeassistant/#"])
    time.sleep(0.5)
    c.close()
    return {t: json.loads(p) for t, p, retain in c.messages if retain and p}


def test_end_to_end_discovery_rediscovery_and_removal(broker: LocalBroker) -> None:
    watcher = Collector(broker.host, broker.port, ["homeassistant/#"])
    ha, link = _run_discovery(broker, DEMO_PIPELINES)
    n = len(ha.entities())
    assert watcher.wait_for(lambda: len({t for t, _p, _r in watcher.messages}) >= n)
    retained = _retained_configs(broker)
    assert {_short(t) for t in retained} == {_short(t) for t in ha.entities()}
    assert {_short(t) for t in retained} >= EXPECTED_STATE_ENTITIES
    assert [p for t, payload in retained.items() for p in problems(t, payload)] == []

    # Home Assistant restarts and announces itself: every config comes again
    before = len(watcher.messages)
    publish_all(broker.host, broker.port, [("homeassistant/status", b"online")])
    assert watcher.wait_for(lambda: len(watcher.messages) >= before + n)
    time.sleep(1.0)  # the discovery record is published after the wait for an earlier one
    link.stop()

    # next start without the anomaly pipeline: its entities are removed, the others stay
    kept = tuple(p for p in DEMO_PIPELINES if p.name != "anomalies")
    ha2, link2 = _run_discovery(broker, kept)
    gone = {t for t in retained if "/anomalies_" in t}
    assert len(gone) >= 4
    assert watcher.wait_for(lambda: gone <= {t for t, p, _r in watcher.messages if p == b""}, timeout=10)
    assert set(ha2.removed) == gone
    after = _retained_configs(broker)
    assert not any("/anomalies_" in t for t in after)
    assert {t for t in retained if t not in gone} == set(after)
    link2.stop()
    watcher.close()


def test_plugin_declared_entities_and_event_types() -> None:
    class TankPlugin:
        event_types = ("door_opened",)

        @classmethod
        def discovery_entities(cls, options: dict[str, Any]) -> list[EntitySpec]:
            return [EntitySpec(("level",), key=t, unit="%", state_class="measurement") for t in options["tanks"]]

    specs, types = declared_entities(TankPlugin, {"tanks": ["t1", "t2"]})
    assert [s.key for s in specs] == ["t1", "t2"] and types == ("door_opened",)
    assert declared_entities(object, None) == ([], ())


def test_integrations_route_messages_and_isolate_failures() -> None:
    from gateway.integrations import Integration, Integrations

    class Broken(Integration):
        name = "broken"

        def on_outputs(self, pipeline: str, plugin: str, outputs: Any) -> None:
            raise RuntimeError("boom")

    published: list[tuple[str, bytes, int, bool]] = []
    ctx = IntegrationContext(GATEWAY, PREFIX, lambda *m: published.append(m), DEMO_PIPELINES)
    group = Integrations.from_config(ctx, homeassistant=HomeAssistantConfig(enabled=True))
    group.items.insert(0, Broken())
    group.on_outputs("maintenance", "predictive_maintenance", demo_outputs()["maintenance"])  # no exception
    assert any("maintenance_pump1_health" in t for t, *_ in published)  # the next integration still ran
    assert group.handles("homeassistant/status") and group.handles(f"{PREFIX}/discovery")
    assert not group.handles("sensors/pump1")
    before = len(published)
    group.on_message("homeassistant/status", b"online")
    assert len(published) - before == len(group.items[1].entities())  # type: ignore[attr-defined]
    assert not Integrations.from_config(ctx, homeassistant=HomeAssistantConfig(enabled=False))
