"""The cloud's MQTT connection: a second paho-mqtt client with its own TLS credentials, as a delivery link."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from gateway.store.config import CloudMqtt

log = logging.getLogger(__name__)


class MqttCloudLink:
    """Publishes to the cloud broker and reports PUBACKs and connection changes (implements ``Link``).

    Unacknowledged QoS1 messages are retransmitted by paho after a reconnect with their message ids,
    so the deliverer's pending acknowledgements stay valid across an outage.
    """

    def __init__(self, config: CloudMqtt, client_id: str, *, max_in_flight: int = 20) -> None:
        self.config = config
        self.client_id = client_id
        protocol = MQTTProtocolVersion.MQTTv5 if config.protocol == "5" else MQTTProtocolVersion.MQTTv311
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self._client.max_inflight_messages_set(max_in_flight)
        self._client.max_queued_messages_set(0)  # what is handed over is bounded by the deliverer's window
        self._client.reconnect_delay_set(int(max(1, config.reconnect_min_s)), int(max(1, config.reconnect_max_s)))
        if config.username is not None:
            self._client.username_pw_set(config.username, config.resolved_password())
        if config.tls is not None:
            tls = config.tls
            key_password = tls.key_password_file.read_text(encoding="utf-8").strip() if tls.key_password_file else None
            self._client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                keyfile_password=key_password,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            if tls.insecure:
                self._client.tls_insecure_set(True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._connected = threading.Event()
        self._ack_listeners: list[Callable[[int], None]] = []
        self._connection_listeners: list[Callable[[bool], None]] = []
        self._started = False

    # -- Link

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        if not self._connected.is_set():
            return None
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        # NO_CONN: the connection dropped meanwhile; paho keeps the message and sends it on reconnect
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return int(info.mid)
        log.warning("cloud publish refused by the client: %s", mqtt.error_string(info.rc))
        return None

    def add_ack_listener(self, cb: Callable[[int], None]) -> None:
        self._ack_listeners.append(cb)

    def add_connection_listener(self, cb: Callable[[bool], None]) -> None:
        self._connection_listeners.append(cb)

    # -- lifecycle

    def start(self) -> None:
        """Connect in the background (retrying with backoff until stopped)."""
        if self._started:
            return
        self._started = True
        log.info("connecting to the cloud broker %s:%d as %s", self.config.host, self.config.port, self.client_id)
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        if not self._started:
            return
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    # -- paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("the cloud broker refused the connection: %s", reason_code)
            return
        log.info("connected to the cloud broker")
        self._connected.set()
        for cb in list(self._connection_listeners):
            cb(True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            log.warning("disconnected from the cloud broker: %s", reason_code)
            for cb in list(self._connection_listeners):
                cb(False)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            # MQTT 5 broker refused it (e.g. not authorised): not acknowledged, re-sent after the ack timeout
            log.error("the cloud broker refused message %d: %s", mid, reason_code)
            return
        for cb in list(self._ack_listeners):
            cb(mid)
