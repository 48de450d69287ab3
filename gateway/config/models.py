"""The gateway's configuration models: one YAML file, overridable from the environment.

Every field has a title and description: the JSON Schema generated from these models
(``edge-gateway config schema``) is the configuration reference, and ``docs/configuration.md``
is generated from it.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.credentials import BrokerLogin
from gateway.inference import ModelSpec
from gateway.integrations.config import HomeAssistantConfig, PrometheusConfig, SparkplugConfig
from gateway.store.config import CloudConfig, StoreConfig

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class Section(BaseModel):
    """Base of every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _check_topic_filter(value: str) -> str:
    if not value or "\x00" in value:
        raise ValueError("a topic filter must be a non-empty string")
    levels = value.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"'#' must be a whole level and the last one in {value!r}")
        if "+" in level and level != "+":
            raise ValueError(f"'+' must be a whole level in {value!r}")
    return value


class TlsConfig(Section):
    """TLS towards the broker; with ``cert_file`` and ``key_file`` it is mutual TLS."""

    ca_file: Path | None = Field(
        None,
        title="CA bundle",
        description="PEM file of the CA(s) that signed the broker's certificate; the system store when unset.",
    )
    cert_file: Path | None = Field(
        None, title="Client certificate", description="PEM client certificate for mutual TLS."
    )
    key_file: Path | None = Field(
        None, title="Client key", description="PEM private key of the client certificate. Never logged."
    )
    key_password_file: Path | None = Field(
        None, title="Client key password file", description="File holding the key's passphrase, if it has one."
    )
    insecure: bool = Field(
        False,
        title="Skip hostname check",
        description="Do not check the broker's hostname against its certificate (test setups only).",
    )

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        return self


class MqttConfig(Section, BrokerLogin):
    """The local broker the gateway subscribes to and publishes on."""

    host: str = Field("localhost", title="Broker host", description="Host name or address of the MQTT broker.")
    port: int = Field(
        1883, ge=1, le=65535, title="Broker port", description="1883 for plain MQTT, 8883 usually for TLS."
    )
    protocol: Literal["5", "3.1.1"] = Field(
        "5", title="MQTT version", description="`5` (default) or `3.1.1` for older brokers."
    )
    client_id: str | None = Field(
        None,
        title="Client id",
        description="Stable client id (the persistent session is keyed on it). Default: `edge-gateway-<gateway_id>`.",
    )
    username: str | None = Field(None, title="User name", description="User name for broker authentication.")
    password: SecretStr | None = Field(
        None, title="Password", description="Broker password. Prefer `password_file` or the environment; never logged."
    )
    password_file: Path | None = Field(
        None, title="Password file", description="File holding the broker password (e.g. a Docker/balena secret)."
    )
    tls: TlsConfig | None = Field(
        None, title="TLS", description="Enable TLS (and mutual TLS with a client certificate)."
    )
    keepalive_s: int = Field(
        30,
        ge=5,
        le=3600,
        title="Keep-alive",
        description="Seconds between pings; the broker publishes the Last Will after 1.5x this of silence.",
    )
    session_expiry_s: int = Field(
        86400,
        ge=0,
        title="Session expiry",
        description="How long the broker keeps the gateway's session (subscriptions and queued QoS1 input) while it is away. 0 = a clean session each time.",
    )
    reconnect_min_s: float = Field(
        0.5, gt=0, le=60, title="Reconnect delay (min)", description="First reconnect delay; doubles up to the maximum."
    )
    reconnect_max_s: float = Field(
        4.0, gt=0, le=300, title="Reconnect delay (max)", description="Upper bound of the reconnect backoff."
    )
    topic_prefix: str = Field(
        "edge/{gateway_id}",
        title="Output topic prefix",
        description="Prefix of every topic the gateway publishes; `{gateway_id}` is replaced.",
    )
    shared_group: str | None = Field(
        None,
        title="Shared subscription group",
        description="When set, input filters are subscribed as `$share/<group>/<filter>` so several gateways split one stream.",
    )
    max_inflight: int = Field(
        100, ge=1, le=65535, title="QoS1 in flight", description="Unacknowledged QoS1 publishes allowed at once."
    )
    max_queued: int = Field(
        10000,
        ge=0,
        title="Client queue",
        description="Outgoing messages the client buffers while disconnected (0 = unbounded; results are also kept in the outbox).",
    )

    @field_validator("shared_group")
    @classmethod
    def _group(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError("letters, digits, '-' and '_' only (no '/', '+', '#')")
        return v


class QueueConfig(Section):
    """A pipeline's input queue and what happens when it is full."""

    size: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        title="Capacity",
        description="Messages the queue holds. Default: 8 for frames, 10000 for readings.",
    )
    policy: Literal["keep_newest", "block", "reject_new"] | None = Field(
        None,
        title="When full",
        description="`keep_newest`: drop the oldest queued message (counted; the default for frames, so a slow device skips "
        "frames instead of lagging). `block`: hold the MQTT intake up to `block_timeout_s` (backpressure to the broker, which "
        "queues QoS1 input), then reject (default for readings). `reject_new`: reject at once. A rejected message is counted "
        "and reported on the errors topic: never dropped silently.",
    )
    block_timeout_s: float = Field(
        5.0,
        ge=0,
        le=300,
        title="Backpressure limit",
        description="With `block`, how long intake waits for room before rejecting.",
    )


class PipelineConfig(Section):
    """One pipeline: a plugin fed by topic filters."""

    name: str = Field(..., title="Name", description="Unique name; used in output topics (`<prefix>/<name>/event`).")
    plugin: str = Field(..., title="Plugin", description="Registered plugin name (`edge-gateway plugins` lists them).")
    inputs: list[str] = Field(
        default_factory=list,
        min_length=0,
        title="Input topic filters",
        description="MQTT topic filters (wildcards `+` and `#` allowed) feeding this pipeline. One message may feed several pipelines.",
    )
    enabled: bool = Field(True, title="Enabled", description="Set false to keep the entry but not run it.")
    queue: QueueConfig = Field(
        default_factory=QueueConfig, title="Input queue", description="Capacity and overflow policy."
    )
    summary_interval_s: float = Field(
        60.0,
        ge=1,
        title="Summary interval",
        description="Seconds between the pipeline's summaries (published and synced to the cloud).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        title="Plugin options",
        description="Validated by the plugin's own options model; see the plugin's section of the reference.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("1-64 letters, digits, '-' or '_', starting with a letter or digit")
        return v

    @field_validator("inputs")
    @classmethod
    def _filters(cls, v: list[str]) -> list[str]:
        return [_check_topic_filter(f) for f in v]


class InputConfig(Section):
    """Decoding of incoming payloads."""

    max_payload_bytes: int = Field(
        4_000_000,
        ge=64,
        title="Payload size limit",
        description="Larger payloads are rejected with a message on the errors topic.",
    )


class OutputsConfig(Section):
    """How results are published."""

    state_min_interval_s: float = Field(
        0.2,
        ge=0,
        le=3600,
        title="State publish interval",
        description="Retained state of one key is published at most this often; in between only the latest value is "
        "kept and it goes out when the interval ends (0 = every change). Events and summaries are never thinned.",
    )


class MetricsConfig(Section):
    """The periodic metrics message."""

    interval_s: float = Field(
        10.0, ge=0.5, title="Interval", description="Seconds between metrics messages on `<prefix>/metrics`."
    )


class LoggingConfig(Section):
    """Log output."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", title="Level", description="Minimum level logged."
    )
    format: Literal["text", "json"] = Field(
        "text", title="Format", description="`text` for people, `json` for one JSON object per line (log shippers)."
    )


ENV_PREFIX = "EDGE_GATEWAY_"


class GatewayConfig(BaseSettings):
    """The whole gateway configuration (the YAML file's top level).

    Values come from, highest priority first: the environment (``EDGE_GATEWAY_`` prefix, ``__`` between
    nesting levels, e.g. ``EDGE_GATEWAY_MQTT__HOST``), then the YAML file. Load it with
    :func:`gateway.config.load_config`, which also validates each pipeline's plugin options.
    """

    model_config = SettingsConfigDict(
        extra="forbid",
        validate_default=True,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
    )
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _plugin_options: dict[str, Any] = PrivateAttr(default_factory=dict)

    gateway_id: str = Field(
        default_factory=lambda: socket.gethostname().split(".")[0],
        title="Gateway id",
        description="Identifies this gateway in topics and payloads. Default: the host name.",
    )
    data_dir: Path = Field(
        Path("data"),
        title="Data directory",
        description="Where the store and learned state live (relative paths are relative to the config file).",
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig, title="MQTT", description="The local broker.")
    input: InputConfig = Field(default_factory=InputConfig, title="Input", description="Payload decoding limits.")
    outputs: OutputsConfig = Field(
        default_factory=OutputsConfig,
        title="Outputs",
        description="Publishing of results: how often retained state may be republished.",
    )
    models: dict[str, ModelSpec] = Field(
        default_factory=dict, title="Models", description="Models by name, referenced from plugin options."
    )
    pipelines: list[PipelineConfig] = Field(
        default_factory=list, title="Pipelines", description="The pipelines to run."
    )
    store: StoreConfig = Field(
        default_factory=StoreConfig, title="Store", description="The local SQLite store and outbox."
    )
    cloud: CloudConfig = Field(
        default_factory=CloudConfig, title="Cloud sync", description="Where summaries are synced."
    )
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig,
        title="Home Assistant",
        description="MQTT discovery of the pipelines' entities in Home Assistant.",
    )
    sparkplug: SparkplugConfig = Field(
        default_factory=SparkplugConfig,
        title="Sparkplug B",
        description="A Sparkplug B edge node for SCADA hosts (its own MQTT connection).",
    )
    prometheus: PrometheusConfig = Field(
        default_factory=PrometheusConfig,
        title="Prometheus",
        description="An HTTP /metrics endpoint with the figures of the metrics topic.",
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, title="Metrics", description="Health and metrics messages."
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig, title="Logging", description="Log level and format.")
    drain_timeout_s: float = Field(
        10.0,
        ge=0,
        le=600,
        title="Drain deadline",
        description="On SIGTERM/SIGINT, how long queued input may still be processed before exit.",
    )

    @field_validator("gateway_id")
    @classmethod
    def _gid(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("1-64 letters, digits, '-' or '_' (it is used in topics)")
        return v

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        seen: set[str] = set()
        for p in self.pipelines:
            if p.name in seen:
                raise ValueError(f"pipeline name {p.name!r} is used twice")
            seen.add(p.name)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        from gateway.config.loader import yaml_source

        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml = yaml_source(settings_cls)
        if yaml is not None:
            sources.append(yaml)
        return tuple(sources)

    @property
    def base_dir(self) -> Path:
        """The directory relative paths in the config are resolved against (the config file's)."""
        return self._base_dir

    def resolve(self, path: Path) -> Path:
        """``path`` made absolute against the config file's directory."""
        return path if path.is_absolute() else (self._base_dir / path)

    def plugin_options(self, pipeline: str) -> Any:
        """The validated options object of a pipeline's plugin (set by ``load_config``)."""
        return self._plugin_options[pipeline]

    @property
    def topic_prefix(self) -> str:
        """The output topic prefix with the gateway id filled in."""
        return self.mqtt.topic_prefix.replace("{gateway_id}", self.gateway_id).rstrip("/")

    @property
    def client_id(self) -> str:
        """The MQTT client id (stable, so the broker keeps the session)."""
        return self.mqtt.client_id or f"edge-gateway-{self.gateway_id}"
