"""The gateway's MQTT connection (paho-mqtt 2.x): session, Last Will, TLS, reconnects, subscriptions.

The paho network thread only hands received messages to ``on_message`` (the router, which enqueues);
publishing is thread-safe and may be called from any worker.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.config import MqttConfig
from gateway.messages import RawMessage
from gateway.router import may_overlap

log = logging.getLogger(__name__)


def make_client(
    cfg: MqttConfig,
    client_id: str,
    base_dir: Path | None = None,
    *,
    v5: bool | None = None,
    clean: bool = True,
    manual_ack: bool = False,
) -> paho.Client:
    """A paho client with the config's protocol, credentials, TLS and reconnect backoff; not yet connected.

    ``clean`` only matters for MQTT 3.1.1 (MQTT 5 chooses clean start when connecting).
    """
    use_v5 = cfg.protocol == "5" if v5 is None else v5
    if use_v5:
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5, manual_ack=manual_ack
        )
    else:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            clean_session=clean,
            manual_ack=manual_ack,
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


def shared_filter(topic_filter: str, group: str | None) -> str:
    """The filter as subscribed: ``$share/<group>/<filter>`` when a shared-subscription group is set."""
    return f"$share/{group}/{topic_filter}" if group else topic_filter


class MqttLink:
    """One MQTT client connection with the gateway's conventions.

    * persistent session: clean start off from the first connect and a session expiry (MQTT 5), or
      ``clean_session=False`` (3.1.1), so QoS1 input published while the gateway was away is delivered;
    * Last Will ``offline`` (retained) on ``will_topic``;
    * reconnects with a bounded backoff and re-subscribes on every connect;
    * implements the outbox's ``Link`` protocol (``connected``, ``publish`` returning a message id, ack and
      connection listeners).
    """

    def __init__(
        self,
        cfg: MqttConfig,
        client_id: str,
        *,
        base_dir: Path | None = None,
        will_topic: str | None = None,
        subscriptions: Sequence[str] = (),
        extra_subscriptions: Sequence[str] = (),
        on_message: Callable[[RawMessage], bool] | None = None,
        name: str = "mqtt",
    ) -> None:
        self.cfg = cfg
        self.name = name
        # Input filters are shared in a group when configured; the gateway's own control topics never are
        # (shared subscriptions get no retained messages).
        self._subscriptions = [shared_filter(f, cfg.shared_group) for f in subscriptions] + list(extra_subscriptions)
        self._on_message = on_message
        self._ack_listeners: list[Callable[[int], None]] = []
        self._conn_listeners: list[Callable[[bool], None]] = []
        self._connected = threading.Event()
        self._v5 = cfg.protocol == "5"
        self.connects = 0
        self.disconnects = 0
        self._stopping = False
        self._first_match: dict[str, int] = {}
        # Subscription identifiers only where filters overlap: parsing the property on every message costs.
        plain = [f.split("/", 2)[2] if f.startswith("$share/") else f for f in self._subscriptions]
        self._overlapping = self._v5 and any(may_overlap(a, b) for i, a in enumerate(plain) for b in plain[i + 1 :])

        # Manual acknowledgement: a QoS1 message is acknowledged once a pipeline queue has taken it, so
        # what arrives while the gateway is stopping stays with the broker (persistent session) and comes back.
        self._client = make_client(cfg, client_id, base_dir, clean=cfg.session_expiry_s == 0, manual_ack=True)
        c = self._client
        c.max_inflight_messages_set(cfg.max_inflight)
        c.max_queued_messages_set(cfg.max_queued)
        if will_topic is not None:
            c.will_set(will_topic, b"offline", qos=1, retain=True)
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        c.on_message = self._handle_message
        c.on_publish = self._handle_publish

    # -- Link protocol --------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Publish; returns the message id to await an acknowledgement for, or None if not accepted now."""
        if not self._connected.is_set():
            return None
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return None
        return info.mid

    def add_ack_listener(self, cb: Callable[[int], None]) -> None:
        self._ack_listeners.append(cb)

    def add_connection_listener(self, cb: Callable[[bool], None]) -> None:
        self._conn_listeners.append(cb)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start the network thread."""
        props = None
        clean_start: bool | int = paho.MQTT_CLEAN_START_FIRST_ONLY
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.cfg.session_expiry_s
            clean_start = self.cfg.session_expiry_s == 0
        self._client.connect_async(
            self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, clean_start=clean_start, properties=props
        )
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self, final: tuple[str, bytes] | None = None, timeout: float = 3.0) -> None:
        """Publish ``final`` (e.g. the retained ``offline`` status), then disconnect cleanly."""
        if final is not None and self.connected:
            info = self._client.publish(final[0], final[1], qos=1, retain=True)
            deadline = time.monotonic() + timeout
            while not info.is_published() and time.monotonic() < deadline and self.connected:
                time.sleep(0.01)
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho callbacks (network thread) --------------------------------------------------------------
    def _handle_connect(
        self, client: paho.Client, _ud: object, flags: object, rc: paho.ReasonCode, _props: object
    ) -> None:
        if rc.is_failure:
            log.warning("%s: connection to %s:%s refused: %s", self.name, self.cfg.host, self.cfg.port, rc)
            return
        self.connects += 1
        session = bool(getattr(flags, "session_present", False))
        log.info("%s: connected to %s:%s (session present: %s)", self.name, self.cfg.host, self.cfg.port, session)
        if self._subscriptions:
            self._subscribe(client)
        self._connected.set()
        for cb in self._conn_listeners:
            try:
                cb(True)
            except Exception:
                log.exception("connection listener failed")

    def _subscribe(self, client: paho.Client) -> None:
        if not self._v5 or not self._overlapping:
            client.subscribe([(f, 1) for f in self._subscriptions])
            return
        # Filters that partly overlap (a/+/c and a/b/+) make the broker send one message once per filter.
        # Each filter gets a subscription identifier; a copy is kept only for the lowest matching one.
        for ident, f in enumerate(self._subscriptions, start=1):
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = ident
            client.subscribe(f, options=SubscribeOptions(qos=1), properties=props)

    def _is_duplicate_copy(self, msg: paho.MQTTMessage) -> bool:
        if not self._overlapping:
            return False
        ids = getattr(msg.properties, "SubscriptionIdentifier", None)
        if not ids:
            return False
        first = self._first_match.get(msg.topic)
        if first is None:
            plain = [f.split("/", 2)[2] if f.startswith("$share/") else f for f in self._subscriptions]
            first = next((i for i, f in enumerate(plain, start=1) if paho.topic_matches_sub(f, msg.topic)), 0)
            if len(self._first_match) < 10_000:
                self._first_match[msg.topic] = first
        return min(ids) != first

    def _handle_disconnect(
        self, _c: paho.Client, _ud: object, _flags: object, rc: paho.ReasonCode, _props: object
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            self.disconnects += 1
            if not self._stopping:
                log.warning("%s: disconnected (%s); reconnecting", self.name, rc)
            for cb in self._conn_listeners:
                try:
                    cb(False)
                except Exception:
                    log.exception("connection listener failed")

    def _handle_message(self, _c: paho.Client, _ud: object, msg: paho.MQTTMessage) -> None:
        if self._is_duplicate_copy(msg):
            if msg.qos > 0:
                self._client.ack(msg.mid, msg.qos)
            return
        taken = True
        if self._on_message is not None:
            taken = self._on_message(RawMessage(msg.topic, msg.payload, msg.qos, bool(msg.retain), time.time()))
        if taken and msg.qos > 0:
            self._client.ack(msg.mid, msg.qos)

    def _handle_publish(self, _c: paho.Client, _ud: object, mid: int, _rc: object, _props: object) -> None:
        for cb in self._ack_listeners:
            cb(mid)
