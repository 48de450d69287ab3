"""Config sections of the integrations: ``homeassistant:``, ``sparkplug:`` and ``prometheus:``.

Each is a top-level section of the gateway's YAML file; all are off unless ``enabled: true``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from gateway.config import MqttConfig

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SPARKPLUG_ID = re.compile(r"^[^/+#]{1,64}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class HomeAssistantConfig(_Section):
    """Home Assistant MQTT discovery: entities for each pipeline's results, grouped under one device per gateway."""

    enabled: bool = Field(False, title="Enabled", description="Publish Home Assistant discovery configs.")
    discovery_prefix: str = Field(
        "homeassistant",
        title="Discovery prefix",
        description="Home Assistant's MQTT discovery prefix (its `discovery_prefix` setting).",
    )
    status_topic: str = Field(
        "homeassistant/status",
        title="Home Assistant status topic",
        description="Where Home Assistant announces `online` (its birth message); configs are re-published then.",
    )
    node_id: str | None = Field(
        None,
        title="Node id",
        description="The `<node_id>` level of discovery topics and the device identifier. Default: the gateway id.",
    )
    device_name: str | None = Field(
        None,
        title="Device name",
        description="Name of the gateway's device in Home Assistant. Default: the gateway id.",
    )
    diagnostics: bool = Field(
        True,
        title="Diagnostic entities",
        description="Also announce diagnostic sensors from the metrics topic (processed count, latency, backlog, "
        "memory, CPU).",
    )
    max_entities_per_pipeline: int = Field(
        200,
        ge=1,
        le=5000,
        title="Entity cap per pipeline",
        description="Upper bound on the entities announced for one pipeline (entities found in state at run time "
        "beyond it are logged and skipped).",
    )

    @field_validator("node_id")
    @classmethod
    def _node(cls, v: str | None) -> str | None:
        if v is not None and not _ID.match(v):
            raise ValueError("letters, digits, '_' and '-' only (Home Assistant's rule for node ids)")
        return v

    @field_validator("discovery_prefix", "status_topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        if not v or "+" in v or "#" in v:
            raise ValueError("a topic without wildcards")
        return v.rstrip("/")


class SparkplugConfig(_Section):
    """A Sparkplug B edge node: the gateway as node, each pipeline as a device."""

    enabled: bool = Field(False, title="Enabled", description="Run the Sparkplug B edge node.")
    group_id: str = Field(
        "edge", title="Group id", description="Sparkplug group id (first topic level after `spBv1.0`)."
    )
    edge_node_id: str | None = Field(
        None, title="Edge node id", description="Sparkplug edge node id. Default: the gateway id."
    )
    mqtt: dict[str, Any] | None = Field(
        None,
        title="Broker",
        description="The broker the SCADA host listens on, with the keys of the top-level `mqtt` section (host, "
        "port, username, password_file, tls...). Default: the gateway's own broker settings. A separate connection "
        "is always used, since the node's death certificate is its Last Will.",
    )
    publish_interval_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        title="DDATA interval",
        description="Changed values are collected and published at most this often per device (0 = at once).",
    )

    @field_validator("mqtt")
    @classmethod
    def _broker(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            from gateway.config import MqttConfig  # here, not at import: the gateway's config mounts this section

            MqttConfig.model_validate(v)
        return v

    def broker(self, default: MqttConfig) -> MqttConfig:
        """The broker settings to use: the ``mqtt`` override if given, else ``default`` (the gateway's)."""
        if self.mqtt is None:
            return default
        from gateway.config import MqttConfig

        return MqttConfig.model_validate(self.mqtt)

    @field_validator("group_id", "edge_node_id")
    @classmethod
    def _level(cls, v: str | None) -> str | None:
        if v is not None and not _SPARKPLUG_ID.match(v):
            raise ValueError("1-64 characters without '/', '+' or '#'")
        return v


class PrometheusConfig(_Section):
    """An HTTP endpoint with the figures of the metrics topic, in Prometheus' text format."""

    enabled: bool = Field(
        False, title="Enabled", description="Serve `/metrics` (needs the `prometheus` extra: prometheus-client)."
    )
    host: str = Field(
        "0.0.0.0", title="Listen address", description="Address to listen on (`127.0.0.1` for local scrapes only)."
    )
    port: int = Field(9110, ge=1, le=65535, title="Port", description="TCP port of the endpoint.")
