"""Configuration of the local store (``store:``) and of the cloud sync (``cloud:``).

Every field has a title and a description: the JSON Schema generated from these models is the
configuration reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from gateway.credentials import BrokerLogin

FullPolicy = Literal["drop_oldest", "reject_new"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class RetentionLimits(_Section):
    """Caps for one kind of record and what happens when a new record would exceed them.

    Delivered records kept for replay count towards the caps too; they are always removed first,
    so the policy only decides about records that still wait for a destination.
    """

    max_rows: int | None = Field(
        None, ge=1, title="Row cap", description="Most records of this kind kept in the store; unset = no row cap."
    )
    max_bytes: int | None = Field(
        None,
        ge=1,
        title="Byte cap",
        description="Most payload bytes of this kind kept in the store (sum of payload sizes); unset = no byte cap.",
    )
    max_age_s: float | None = Field(
        None,
        gt=0,
        title="Age cap",
        description="Records older than this (seconds since they were created) are removed; undelivered ones are "
        "counted as `expired`. Unset = kept until delivered.",
    )
    when_full: FullPolicy = Field(
        "drop_oldest",
        title="Policy when full",
        description="`drop_oldest`: make room by removing the oldest undelivered records of this kind (counted as "
        "`dropped`). `reject_new`: keep what is stored and refuse the new record (counted as `rejected`).",
    )


def _default_limits() -> dict[str, RetentionLimits]:
    return {
        "event": RetentionLimits(max_rows=1_000_000, max_bytes=512 * 1024 * 1024, when_full="drop_oldest"),
        "summary": RetentionLimits(max_rows=200_000, max_bytes=128 * 1024 * 1024, when_full="reject_new"),
    }


class StoreConfig(_Section):
    """The local SQLite store: every event and summary is written here before it is published."""

    backend: Literal["sqlite", "memory"] = Field(
        "sqlite",
        title="Backend",
        description="`sqlite` (durable, the default) or `memory` (nothing survives a restart; for tests and "
        "read-only media).",
    )
    path: Path = Field(
        Path("outbox.db"),
        title="Database file",
        description="SQLite file of the store; a relative path is relative to the gateway's `data_dir`.",
    )
    limits: dict[str, RetentionLimits] = Field(
        default_factory=_default_limits,
        title="Caps per kind",
        description="Caps and policy when full, per kind of record (`event`, `summary`, ...). Kinds not listed use "
        "`default_limits`.",
    )
    default_limits: RetentionLimits = Field(
        default_factory=lambda: RetentionLimits(max_rows=100_000, max_bytes=64 * 1024 * 1024),
        title="Caps of other kinds",
        description="Caps of the kinds not listed in `limits`.",
    )
    keep_delivered_s: float = Field(
        3600.0,
        ge=0,
        title="Keep delivered records",
        description="How long (seconds since creation) records delivered to every destination are kept, so "
        "`edge-gateway outbox replay` can send them again. 0 = removed as soon as possible.",
    )
    batch_size: int = Field(
        2000, ge=1, le=100_000, title="Write batch", description="Most writes the writer commits in one transaction."
    )
    flush_interval_s: float = Field(
        0.02,
        ge=0,
        le=10,
        title="Write delay",
        description="How long the writer waits to gather a batch before committing. A record is published only "
        "after it is committed, so this is added to the publish latency.",
    )
    maintenance_interval_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        title="Maintenance interval",
        description="Seconds between passes that expire old records and remove delivered ones past `keep_delivered_s`.",
    )
    spill_max_records: int = Field(
        50_000,
        ge=1,
        title="Spill capacity",
        description="Writes held in memory while the database cannot be written (disk full, read-only file). "
        "Beyond it new records are refused and counted as `spill_overflow`. While the disk is healthy, intake "
        "waits for the writer instead (backpressure).",
    )
    retry_interval_s: float = Field(
        1.0,
        gt=0,
        le=300,
        title="Retry interval",
        description="How often the writer retries after a failed write (doubling up to 30 s).",
    )
    max_file_bytes: int | None = Field(
        None,
        ge=65536,
        title="Database size limit",
        description="Hard limit of the database file (SQLite `max_page_count`); writes beyond it fail as on a full "
        "disk. Useful on an SD card shared with other software. Unset = the disk's size.",
    )

    def limits_for(self, kind: str) -> RetentionLimits:
        """The caps that apply to ``kind``."""
        return self.limits.get(kind, self.default_limits)


class CloudTls(_Section):
    """TLS of the cloud connection; with ``cert_file`` and ``key_file`` it is mutual TLS."""

    ca_file: Path | None = Field(
        None, title="CA bundle", description="PEM file of the CA(s) of the cloud broker; the system store when unset."
    )
    cert_file: Path | None = Field(None, title="Client certificate", description="PEM client certificate (mutual TLS).")
    key_file: Path | None = Field(
        None, title="Client key", description="PEM private key of the client certificate. Never logged."
    )
    key_password_file: Path | None = Field(
        None, title="Client key password file", description="File holding the key's passphrase, if it has one."
    )
    insecure: bool = Field(
        False, title="Skip hostname check", description="Do not check the host name of the certificate (tests only)."
    )

    @model_validator(mode="after")
    def _pair(self) -> CloudTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        return self


class CloudMqtt(_Section, BrokerLogin):
    """A second MQTT connection, to the cloud broker, with its own credentials."""

    host: str = Field(..., title="Broker host", description="Host name or address of the cloud broker.")
    port: int = Field(8883, ge=1, le=65535, title="Broker port", description="8883 for MQTT over TLS.")
    protocol: Literal["5", "3.1.1"] = Field("3.1.1", title="MQTT version", description="`3.1.1` or `5`.")
    client_id: str | None = Field(
        None,
        title="Client id",
        description="Client id at the cloud broker. Default: `edge-gateway-<gateway_id>-cloud`.",
    )
    username: str | None = Field(None, title="User name", description="User name at the cloud broker.")
    password: SecretStr | None = Field(
        None, title="Password", description="Password at the cloud broker. Prefer `password_file`; never logged."
    )
    password_file: Path | None = Field(None, title="Password file", description="File holding the password.")
    tls: CloudTls | None = Field(
        default_factory=CloudTls,
        title="TLS",
        description="TLS settings; set to null for a plain connection (test setups only).",
    )
    keepalive_s: int = Field(60, ge=5, le=3600, title="Keep-alive", description="Seconds between pings.")
    reconnect_min_s: float = Field(1.0, gt=0, le=60, title="Reconnect delay (min)", description="First retry delay.")
    reconnect_max_s: float = Field(
        60.0, gt=0, le=3600, title="Reconnect delay (max)", description="Upper bound of the reconnect backoff."
    )


class CloudHttps(_Section):
    """An HTTPS endpoint receiving each record as one POST (the alternative to a cloud broker)."""

    url: str = Field(
        ...,
        title="URL",
        description="Endpoint receiving the records; `{topic}` is replaced by the record's cloud topic (from "
        "`topic_template`), which is also sent in the `X-Edge-Topic` header.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, title="Headers", description="Extra HTTP headers sent with every request."
    )
    token_file: Path | None = Field(
        None,
        title="Bearer token file",
        description="File holding a token sent as `Authorization: Bearer <token>`; never logged.",
    )
    ca_file: Path | None = Field(
        None, title="CA bundle", description="PEM file of the CA(s) of the endpoint; the system store when unset."
    )
    timeout_s: float = Field(10.0, gt=0, le=300, title="Timeout", description="Seconds before a request is given up.")
    retry_s: float = Field(
        5.0, gt=0, le=3600, title="Retry delay", description="Seconds to wait after a failed request before retrying."
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("the URL must start with https:// (or http:// on a trusted network)")
        return v


class CloudConfig(_Section):
    """Cloud sync: summaries (and optionally other kinds) forwarded from the store to the cloud."""

    enabled: bool = Field(False, title="Enabled", description="Forward records to the cloud.")
    mqtt: CloudMqtt | None = Field(None, title="Cloud broker", description="Send over MQTT to this broker.")
    https: CloudHttps | None = Field(None, title="HTTPS endpoint", description="Send as HTTPS POST requests instead.")
    topic_template: str = Field(
        "gateways/{gateway_id}/{pipeline}/{kind}",
        title="Topic template",
        description="Cloud topic of each record; `{gateway_id}`, `{pipeline}` and `{kind}` are replaced.",
    )
    kinds: list[str] = Field(
        default_factory=lambda: ["summary"],
        title="Kinds sent",
        description="Kinds of record that leave the site. Only summaries unless you add more (e.g. `event`).",
    )
    qos: Literal[0, 1] = Field(1, title="QoS", description="QoS of cloud publishes; 1 gives at-least-once delivery.")
    rate_limit_per_s: float | None = Field(
        20.0,
        gt=0,
        title="Rate limit",
        description="Most records sent per second, also while catching up after an outage; unset = no limit.",
    )
    max_in_flight: int = Field(
        20, ge=1, le=1000, title="In flight", description="Records sent and not yet acknowledged at once."
    )

    @field_validator("topic_template")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        try:
            topic = v.format(gateway_id="g", pipeline="p", kind="k")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"only {{gateway_id}}, {{pipeline}} and {{kind}} may be used ({e})") from None
        if not topic or "+" in topic or "#" in topic:
            raise ValueError("a topic must be non-empty and without wildcards")
        return v

    @model_validator(mode="after")
    def _destination(self) -> CloudConfig:
        if self.mqtt is not None and self.https is not None:
            raise ValueError("give either mqtt or https, not both")
        if self.enabled and self.mqtt is None and self.https is None:
            raise ValueError("cloud sync is enabled but neither mqtt nor https is configured")
        return self

    def topic_for(self, gateway_id: str, pipeline: str, kind: str) -> str:
        """The cloud topic of a record."""
        return self.topic_template.format(gateway_id=gateway_id, pipeline=pipeline, kind=kind)
