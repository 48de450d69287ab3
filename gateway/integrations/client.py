"""Plain paho-mqtt clients built from an :class:`~gateway.config.MqttConfig`.

Used where a connection of its own is needed: the Sparkplug edge node (its death certificate is the
connection's Last Will), ``edge-gateway watch``, and :class:`IntegrationLink`, which runs integrations on
their own connection when they are not wired into a gateway's link (tools, tests).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import MqttConfig
from gateway.integrations import Integration
from gateway.mqtt import make_client

__all__ = ["IntegrationLink", "make_client"]

log = logging.getLogger(__name__)


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
