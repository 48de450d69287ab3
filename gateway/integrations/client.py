"""Plain paho-mqtt clients built from an :class:`~gateway.config.MqttConfig`.

Used where a connection of its own is needed: the Sparkplug edge node (its death certificate is the
connection's Last Will), ``edge-gateway watch``, and :class:`IntegrationLink`, which runs integrations on
their own connection when they are not wired into a gateway's link (tools, tests).
"""

from __future__ import annotations

import logging
import ssl
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import MqttConfig
from gateway.integrations import Integration

log = logging.getLogger(__name__)


def make_client(
    cfg: MqttConfig, client_id: str, base_dir: Path | None = None, *, v5: bool | None = None
) -> paho.Client:
    """A paho client (clean session) with the config's credentials and TLS; not yet connected."""
    use_v5 = cfg.protocol == "5" if v5 is None else v5
    if use_v5:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    else:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, clean_session=True
        )
    client.reconnect_delay_set(min_delay=cfg.reconnect_min_s, max_delay=cfg.reconnect_max_s)  # type: ignore[arg-type]
    if cfg.username is not None:
        client.username_pw_set(cfg.username, cfg.resolved_password())
    if cfg.tls is not None:
        base = base_dir or Path.cwd()
        t = cfg.tls

        def res(p: Path | None) -> str | None:
            return None if p is None else str(p if p.is_absolute() else base / p)

        key_password = None
        if t.key_password_file is not None:
            key_password = Path(res(t.key_password_file) or "").read_text().strip()
        client.tls_set(
            ca_certs=res(t.ca_file),
            certfile=res(t.cert_file),
            keyfile=res(t.key_file),
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
            keyfile_password=key_password,
        )
        client.tls_insecure_set(t.insecure)
    return client


class IntegrationLink:
    """An MQTT connection of its own for one integration: subscribes its filters, routes, reconnects.

    The gateway normally routes integrations over its own link; this is for running one standalone.
    """

    def __init__(self, cfg: MqttConfig, client_id: str, base_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.client = make_client(cfg, client_id, base_dir)
        self.integration: Integration | None = None
        self._connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        return info.mid if info.rc == paho.MQTT_ERR_SUCCESS else None

    def attach(self, integration: Integration) -> None:
        self.integration = integration

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            log.warning("integration link refused: %s", rc)
            return
        if self.integration is not None:
            filters = self.integration.subscriptions()
            if filters:
                client.subscribe([(f, 1) for f in filters])
        self._connected.set()
        if self.integration is not None:
            self.integration.on_connect()

    def _on_disconnect(self, *_: Any) -> None:
        self._connected.clear()

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        if self.integration is not None:
            try:
                self.integration.on_message(msg.topic, bytes(msg.payload))
            except Exception:
                log.exception("integration: message on %s failed", msg.topic)
