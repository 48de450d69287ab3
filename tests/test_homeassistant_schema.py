"""Home Assistant's documented MQTT discovery fields (sensor, binary_sensor, event), and the payloads checked against them.

Taken from the Home Assistant MQTT integration documentation: the configuration variables of each
platform, the device and origin blocks, and the valid device and state classes.
"""

from __future__ import annotations

import re
from typing import Any

COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic", "device", "enabled_by_default",
    "encoding", "entity_category", "entity_picture", "icon", "json_attributes_template", "json_attributes_topic",
    "name", "object_id", "default_entity_id", "origin", "payload_available", "payload_not_available", "platform",
    "qos", "state_topic", "unique_id", "value_template",
}  # fmt: skip
FIELDS = {
    "sensor": COMMON | {
        "device_class", "expire_after", "force_update", "last_reset_value_template", "options",
        "suggested_display_precision", "state_class", "unit_of_measurement",
    },
    "binary_sensor": COMMON | {"device_class", "expire_after", "force_update", "off_delay", "payload_off", "payload_on"},
    "event": COMMON | {"device_class", "event_types"},
}  # fmt: skip
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "event": {"state_topic", "event_types"}}
DEVICE = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id", "name",
    "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
ORIGIN = {"name", "sw_version", "support_url"}
AVAILABILITY = {"payload_available", "payload_not_available", "topic", "value_template"}
SENSOR_CLASSES = {
    "apparent_power", "aqi", "area", "atmospheric_pressure", "battery", "blood_glucose_concentration",
    "carbon_dioxide", "carbon_monoxide", "current", "data_rate", "data_size", "date", "distance", "duration",
    "energy", "energy_distance", "energy_storage", "enum", "frequency", "gas", "humidity", "illuminance",
    "irradiance", "moisture", "monetary", "nitrogen_dioxide", "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph",
    "pm1", "pm10", "pm25", "power_factor", "power", "precipitation", "precipitation_intensity", "pressure",
    "reactive_power", "signal_strength", "sound_pressure", "speed", "sulphur_dioxide", "temperature", "timestamp",
    "volatile_organic_compounds", "volatile_organic_compounds_parts", "voltage", "volume", "volume_flow_rate",
    "volume_storage", "water", "weight", "wind_direction", "wind_speed",
}  # fmt: skip
BINARY_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas", "heat",
    "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power", "presence", "problem",
    "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
}  # fmt: skip
UNITS = {"duration": {"d", "h", "min", "s", "ms", "µs"}, "data_size": {"B", "kB", "MB", "GB", "KiB", "MiB", "GiB"}}
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
TOPIC = re.compile(
    r"^(?P<prefix>.+?)/(?P<component>[a-z_]+)/(?:(?P<node>[A-Za-z0-9_-]+)/)?(?P<object>[A-Za-z0-9_-]+)/config$"
)


def problems(topic: str, payload: dict[str, Any]) -> list[str]:
    """What in a discovery message breaks Home Assistant's documented schema (empty when fine)."""
    out: list[str] = []
    m = TOPIC.match(topic)
    if m is None:
        return [f"{topic}: not a discovery config topic"]
    component = m["component"]
    if component not in FIELDS:
        return [f"{topic}: component {component} not checked here"]
    unknown = set(payload) - FIELDS[component]
    if unknown:
        out.append(f"{topic}: unknown fields {sorted(unknown)}")
    missing = REQUIRED[component] - set(payload)
    if missing:
        out.append(f"{topic}: missing {sorted(missing)}")
    if set(payload.get("device", {})) - DEVICE:
        out.append(f"{topic}: unknown device fields {sorted(set(payload['device']) - DEVICE)}")
    if "device" in payload and not (payload["device"].get("identifiers") or payload["device"].get("connections")):
        out.append(f"{topic}: a device needs identifiers or connections")
    if "origin" in payload and ("name" not in payload["origin"] or set(payload["origin"]) - ORIGIN):
        out.append(f"{topic}: origin needs a name and only {sorted(ORIGIN)}")
    for a in payload.get("availability", []):
        if "topic" not in a or set(a) - AVAILABILITY:
            out.append(f"{topic}: bad availability entry {a}")
    if "unique_id" in payload and "device" not in payload:
        pass
    if "device" in payload and "unique_id" not in payload:
        out.append(f"{topic}: a device block needs a unique_id")
    dc = payload.get("device_class")
    if dc is not None:
        valid = SENSOR_CLASSES if component == "sensor" else BINARY_CLASSES if component == "binary_sensor" else set()
        if dc not in valid:
            out.append(f"{topic}: device_class {dc} is not valid for {component}")
        if dc in UNITS and payload.get("unit_of_measurement") not in UNITS[dc]:
            out.append(f"{topic}: unit {payload.get('unit_of_measurement')} is not valid for {dc}")
    if payload.get("state_class") is not None and payload["state_class"] not in STATE_CLASSES:
        out.append(f"{topic}: state_class {payload['state_class']}")
    if payload.get("entity_category") not in (None, "diagnostic", "config"):
        out.append(f"{topic}: entity_category {payload['entity_category']}")
    if component == "sensor" and payload.get("entity_category") == "config":
        out.append(f"{topic}: sensors cannot be config entities")
    if component == "event" and not (isinstance(payload.get("event_types"), list) and payload["event_types"]):
        out.append(f"{topic}: event_types must be a non-empty list")
    return out


# -- the gateway's payloads against the schema above ---------------------------------------------------
def _discovery_for_demo() -> dict[str, dict[str, Any]]:
    from tests.test_homeassistant import demo_discovery

    ha, _published = demo_discovery()
    return ha.entities()


def test_schema_check_catches_bad_payloads() -> None:
    topic = "homeassistant/sensor/gw/x/config"
    good = {"name": "x", "unique_id": "gw_x", "state_topic": "t", "device": {"identifiers": ["gw"]}}
    assert problems(topic, good) == []
    assert problems(topic, {**good, "unit": "%"})  # a typo of unit_of_measurement
    assert problems(topic, {**good, "device_class": "problem"})  # a binary sensor class on a sensor
    assert problems(topic, {**good, "device_class": "duration", "unit_of_measurement": "hours"})
    assert problems("homeassistant/sensor/gw/bad id/config", good)


def test_every_demo_entity_follows_home_assistant_schema() -> None:
    entities = _discovery_for_demo()
    assert len(entities) > 10
    found = [p for topic, payload in entities.items() for p in problems(topic, payload)]
    assert found == []
    unique_ids = [p["unique_id"] for p in entities.values()]
    assert len(unique_ids) == len(set(unique_ids))
