"""Delivery from the outbox: order, acknowledgements, reconnects, re-sends, rate limit.

The logic is pinned down with a scripted link; the last tests run through a real Mosquitto.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.broker import LocalBroker, mosquitto_binary
from gateway.cloud.mqtt_link import MqttCloudLink
from gateway.store.config import CloudMqtt, StoreConfig
from gateway.store.delivery import Deliverer, Link, RateLimiter
from gateway.store.memory import MemoryBackend
from gateway.store.outbox import Outbox
from gateway.store.sqlite import SqliteBackend
from tests.mqtt_helpers import Collector


class ScriptedLink:
    """A link whose broker the test plays: it records publishes and acknowledges on request."""

    def __init__(self, *, auto_ack: bool = True, connected: bool = True) -> None:
        self.auto_ack = auto_ack
        self._connected = connected
        self.sent: list[tuple[int, str, bytes, int]] = []
        self.unacked: list[int] = []
        self._mid = 0
        self._lock = threading.Lock()
        self._acks: list[Callable[[int], None]] = []
        self._conns: list[Callable[[bool], None]] = []

    @property
    def connected(self) -> bool:
        return self._connected

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        if not self._connected:
            return None
        with self._lock:
            self._mid += 1
            mid = self._mid
            self.sent.append((mid, topic, payload, qos))
            if not self.auto_ack:
                self.unacked.append(mid)
        if self.auto_ack:
            for cb in self._acks:
                cb(mid)  # acknowledged before publish() returns: the race a fast broker creates
        return mid

    def add_ack_listener(self, cb: Callable[[int], None]) -> None:
        self._acks.append(cb)

    def add_connection_listener(self, cb: Callable[[bool], None]) -> None:
        self._conns.append(cb)

    def ack_all(self) -> None:
        with self._lock:
            mids, self.unacked = self.unacked, []
        for mid in mids:
            for cb in self._acks:
                cb(mid)

    def set_connected(self, up: bool) -> None:
        self._connected = up
        for cb in self._conns:
            cb(up)

    def payloads(self) -> list[bytes]:
        return [p for _, _, p, _ in self.sent]


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def outbox() -> Iterator[Outbox]:
    ob = Outbox(MemoryBackend(), StoreConfig(flush_interval_s=0.001))
    yield ob
    ob.close()


def fill(ob: Outbox, n: int, kind: str = "event", **kw: object) -> list[bytes]:
    payloads = [b"r%04d" % i for i in range(n)]
    for p in payloads:
        ob.put(kind, "p", "edge/gw/p/" + kind, p, **kw)  # type: ignore[arg-type]
    ob.flush()
    return payloads


def test_the_scripted_link_satisfies_the_protocol() -> None:
    assert isinstance(ScriptedLink(), Link)


def test_records_are_published_in_order_and_marked_delivered_on_ack(outbox: Outbox) -> None:
    link = ScriptedLink()
    payloads = fill(outbox, 250)
    d = Deliverer(outbox, "local", link, max_in_flight=40, batch_size=16).start()
    try:
        assert wait_for(lambda: outbox.stats().destinations["local"].delivered == 250)
        assert link.payloads() == payloads
        assert {t for _, t, _, _ in link.sent} == {"edge/gw/p/event"}
        s = d.stats()
        assert (s.published, s.acknowledged, s.in_flight) == (250, 250, 0)
    finally:
        d.stop()


def test_in_flight_window_is_respected_until_acks_arrive(outbox: Outbox) -> None:
    link = ScriptedLink(auto_ack=False)
    fill(outbox, 50)
    d = Deliverer(outbox, "local", link, max_in_flight=10, batch_size=10).start()
    try:
        assert wait_for(lambda: len(link.sent) == 10)
        time.sleep(0.1)
        assert len(link.sent) == 10  # nothing more until acknowledged
        while outbox.stats().destinations["local"].delivered < 50:
            link.ack_all()
            time.sleep(0.01)
        assert link.payloads() == [b"r%04d" % i for i in range(50)]
    finally:
        d.stop()


def test_acks_after_a_reconnect_still_complete_records_without_resending(outbox: Outbox) -> None:
    """MQTT clients retransmit unacknowledged QoS1 messages with the same id after reconnecting."""
    link = ScriptedLink(auto_ack=False)
    fill(outbox, 5)
    d = Deliverer(outbox, "local", link, ack_timeout_s=30).start()
    try:
        assert wait_for(lambda: len(link.sent) == 5)
        link.set_connected(False)
        link.set_connected(True)
        link.ack_all()
        assert wait_for(lambda: outbox.stats().destinations["local"].delivered == 5)
        assert len(link.sent) == 5 and outbox.stats().counters["duplicates"] == 0
    finally:
        d.stop()


def test_unacknowledged_records_are_sent_again_after_the_ack_timeout_and_counted(outbox: Outbox) -> None:
    link = ScriptedLink(auto_ack=False)
    fill(outbox, 3)
    d = Deliverer(outbox, "local", link, ack_timeout_s=0.2, idle_poll_s=0.05).start()
    try:
        assert wait_for(lambda: len(link.sent) == 3)
        link.unacked.clear()  # those acks never come (the broker lost them)
        assert wait_for(lambda: len(link.sent) == 6)
        link.ack_all()
        assert wait_for(lambda: outbox.stats().destinations["local"].delivered == 3)
        assert link.payloads() == [b"r0000", b"r0001", b"r0002"] * 2
        assert outbox.stats().counters["duplicates"] == 3
        assert d.stats().resent_after_timeout == 3
    finally:
        d.stop()


def test_nothing_is_published_while_disconnected_and_the_backlog_follows_in_order(outbox: Outbox) -> None:
    link = ScriptedLink(connected=False)
    d = Deliverer(outbox, "local", link, idle_poll_s=0.05).start()
    try:
        payloads = fill(outbox, 30)
        time.sleep(0.1)
        assert link.sent == []
        assert outbox.stats().destinations["local"].pending == 30
        link.set_connected(True)
        assert wait_for(lambda: outbox.stats().destinations["local"].delivered == 30)
        assert link.payloads() == payloads
    finally:
        d.stop()


def test_qos0_records_count_as_delivered_once_handed_over(outbox: Outbox) -> None:
    link = ScriptedLink(auto_ack=False)
    fill(outbox, 4, qos=0)
    d = Deliverer(outbox, "local", link).start()
    try:
        assert wait_for(lambda: outbox.stats().destinations["local"].delivered == 4)
        assert [q for *_, q in link.sent] == [0, 0, 0, 0]
    finally:
        d.stop()


def test_topic_and_qos_can_be_mapped_per_destination(outbox: Outbox) -> None:
    link = ScriptedLink()
    fill(outbox, 2, kind="summary", destinations=("local", "cloud"))
    d = Deliverer(outbox, "cloud", link, topic_for=lambda r: f"gateways/gw/{r.pipeline}/{r.kind}", qos=1).start()
    try:
        assert wait_for(lambda: outbox.stats().destinations["cloud"].delivered == 2)
        assert [t for _, t, _, _ in link.sent] == ["gateways/gw/p/summary"] * 2
        assert outbox.stats().destinations["local"].pending == 2  # the local destination is independent
    finally:
        d.stop()


def test_a_record_the_link_can_never_send_is_reported_and_does_not_block_the_rest(outbox: Outbox) -> None:
    link = ScriptedLink()
    real_publish = link.publish

    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        if payload == b"r0001":
            raise ValueError("Publish topic cannot contain wildcards.")
        return real_publish(topic, payload, qos, retain)

    link.publish = publish  # type: ignore[method-assign]
    fill(outbox, 3)
    d = Deliverer(outbox, "local", link).start()
    try:
        assert wait_for(lambda: outbox.stats().destinations["local"].pending == 0)
        assert link.payloads() == [b"r0000", b"r0002"]
        assert d.stats().unsendable == 1
    finally:
        d.stop()


def test_rate_limiter_allows_the_configured_rate_on_average() -> None:
    now = [0.0]
    limiter = RateLimiter(5.0, burst=1.0, clock=lambda: now[0])
    waits = []
    for _ in range(10):
        delay = limiter.delay()
        waits.append(delay)
        now[0] += delay
    assert waits[0] == 0.0
    assert now[0] == pytest.approx(9 / 5.0)


def test_rate_limited_delivery_spaces_records(outbox: Outbox) -> None:
    link = ScriptedLink()
    fill(outbox, 6)
    d = Deliverer(outbox, "local", link, rate_limit_per_s=50.0).start()
    try:
        assert wait_for(lambda: outbox.stats().destinations["local"].delivered == 6)
        assert link.payloads() == [b"r%04d" % i for i in range(6)]
    finally:
        d.stop()


# -- through a real broker -------------------------------------------------------------------------


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[LocalBroker]:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    # save sessions and queued messages on every change, so a SIGKILL loses (almost) nothing the broker took
    b = LocalBroker(workdir=tmp_path / "broker", persistence=True, extra_config="autosave_on_changes true").start()
    yield b
    b.stop()


class SessionCollector:
    """A subscriber with a persistent session (MQTT 3.1.1, clean_session off): it misses nothing while away."""

    def __init__(
        self, host: str, port: int, topic_filter: str, client_id: str, *, tls: dict[str, str] | None = None
    ) -> None:
        self.messages: list[bytes] = []
        self.topics: list[str] = []
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311, clean_session=False
        )
        if tls is not None:
            self.client.tls_set(**tls)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic_filter, qos=1)
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("subscription not acknowledged")

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg.payload)
            self.topics.append(msg.topic)

    def received(self) -> list[bytes]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def plain_link(broker: LocalBroker, client_id: str) -> MqttCloudLink:
    cfg = CloudMqtt(
        host=broker.host, port=broker.port, tls=None, reconnect_min_s=0.1, reconnect_max_s=0.5, keepalive_s=5
    )
    return MqttCloudLink(cfg, client_id, max_in_flight=50)


def test_sqlite_outbox_to_a_real_broker_delivers_everything_in_order(mosquitto: LocalBroker, tmp_path: Path) -> None:
    ob = Outbox(SqliteBackend(tmp_path / "o.db"), StoreConfig(flush_interval_s=0.005))
    sub = Collector(mosquitto.host, mosquitto.port, ["edge/#"])
    link = plain_link(mosquitto, "gw-local")
    d = Deliverer(ob, "local", link)
    try:
        link.start()
        d.start()
        payloads = fill(ob, 500)
        assert wait_for(lambda: ob.stats().destinations["local"].delivered == 500, 20)
        got = sub.wait_count("/event", 500)
        assert got == payloads
    finally:
        d.stop()
        link.stop()
        sub.close()
        ob.close()


def test_broker_killed_mid_stream_nothing_is_lost(mosquitto: LocalBroker, tmp_path: Path) -> None:
    """Exact accounting: every record is delivered; extra copies are at most the counted re-sends."""
    ob = Outbox(SqliteBackend(tmp_path / "o.db"), StoreConfig(flush_interval_s=0.005))
    link = plain_link(mosquitto, "gw-local")
    d = Deliverer(ob, "local", link, ack_timeout_s=2.0, max_in_flight=50)
    sub = SessionCollector(mosquitto.host, mosquitto.port, "edge/#", "checker")
    try:
        link.start()
        d.start()
        produced = fill(ob, 300)
        wait_for(lambda: ob.stats().destinations["local"].delivered >= 100)
        mosquitto.kill()
        produced += [b"during %04d" % i for i in range(200)]
        for p in produced[300:]:
            ob.put("event", "p", "edge/gw/p/event", p)
        ob.flush()
        time.sleep(1.0)
        mosquitto.start()
        assert wait_for(lambda: ob.stats().destinations["local"].pending == 0 and ob.in_flight("local") == 0, 30)
        wait_for(lambda: set(sub.received()) >= set(produced), 20)
        got = sub.received()
        assert set(got) == set(produced), f"{len(set(produced) - set(got))} records lost"
        s = ob.stats()
        assert s.destinations["local"].delivered == len(produced)
        # copies beyond one per record: the outbox's counted re-sends, plus what the client retransmitted
        # itself (at most its in-flight window, 50) and what the restarted broker redelivered to the reader
        # (at most its in-flight window towards a subscriber, 100)
        assert len(got) - len(produced) <= s.counters["duplicates"] + 50 + 100
    finally:
        d.stop()
        link.stop()
        sub.close()
        ob.close()
