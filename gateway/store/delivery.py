"""Delivery from the outbox to one destination: oldest first, acknowledged, re-sent until acknowledged.

A :class:`Deliverer` runs one thread per destination. It takes committed records from the outbox,
publishes them through a :class:`Link` (the local broker's MQTT connection, the cloud's MQTT connection,
an HTTPS endpoint) and marks them delivered when the link acknowledges them (PUBACK for QoS1, a 2xx
response for HTTPS).

What is unacknowledged is kept in flight across a disconnect: MQTT clients retransmit unacknowledged
QoS1 messages themselves on reconnect, with the same message id, so their acknowledgements still mark
the records delivered. Whatever is still unacknowledged ``ack_timeout_s`` after the link is (re)connected
is made pending again and sent again; after a restart everything unacknowledged is sent again. Both
may duplicate a message; the outbox counts those re-sends in ``duplicates`` and every record carries a
unique id so consumers can drop them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.store.outbox import Outbox
from gateway.store.records import OutboxRecord

log = logging.getLogger(__name__)


@runtime_checkable
class Link(Protocol):
    """A connection records are published through, with acknowledgements."""

    @property
    def connected(self) -> bool: ...

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        """Hand over a message; the message id to await an ack for, or ``None`` if not accepted now."""
        ...

    def add_ack_listener(self, cb: Callable[[int], None]) -> None:
        """``cb(message_id)`` is called when the message is acknowledged (PUBACK, 2xx)."""
        ...

    def add_connection_listener(self, cb: Callable[[bool], None]) -> None:
        """``cb(True)`` on connect, ``cb(False)`` on disconnect."""
        ...


class RateLimiter:
    """Token bucket: on average ``rate`` acquisitions per second, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    def delay(self) -> float:
        """Take one token; the seconds to wait before using it (0 when one was available)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclass(frozen=True, slots=True)
class DelivererStats:
    """What one deliverer did since start."""

    destination: str
    connected: bool
    published: int
    acknowledged: int
    resent_after_timeout: int
    in_flight: int
    refused: int
    unsendable: int


class Deliverer:
    """Sends one destination's pending records through a link, in order, within an optional rate limit."""

    def __init__(
        self,
        outbox: Outbox,
        destination: str,
        link: Link,
        *,
        topic_for: Callable[[OutboxRecord], str] | None = None,
        qos: int | None = None,
        max_in_flight: int = 200,
        batch_size: int = 100,
        rate_limit_per_s: float | None = None,
        ack_timeout_s: float = 30.0,
        idle_poll_s: float = 1.0,
    ) -> None:
        self.outbox = outbox
        self.destination = destination
        self.link = link
        self._topic_for = topic_for or (lambda r: r.topic)
        self._qos = qos
        self.max_in_flight = max_in_flight
        self.batch_size = max(1, min(batch_size, max_in_flight))
        self._limiter = RateLimiter(rate_limit_per_s) if rate_limit_per_s else None
        self.ack_timeout_s = ack_timeout_s
        self.idle_poll_s = idle_poll_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._by_mid: dict[int, tuple[str, float]] = {}
        self._early_acks: dict[int, float] = {}
        self._acked: list[str] = []  # acknowledged, not yet passed to the outbox (done in batches)
        self._wake_after = max(1, self.batch_size // 2)
        self._cursor: str | None = None  # the last id handed out, while the outbox's order holds
        self._rewinds = -1
        self._published = 0
        self._acknowledged = 0
        self._timed_out = 0
        self._refused = 0
        self._unsendable = 0
        self._thread: threading.Thread | None = None
        if destination not in outbox.destinations:
            raise ValueError(f"unknown destination {destination!r} (known: {', '.join(outbox.destinations)})")
        link.add_ack_listener(self._on_ack)
        link.add_connection_listener(self._on_connection)
        outbox.add_commit_listener(self._wake.set)

    def start(self) -> Deliverer:
        """Start the delivery thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"deliver-{self.destination}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sending (what is in flight stays in flight until acknowledged or the process ends)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look for pending records now."""
        self._wake.set()

    def stats(self) -> DelivererStats:
        with self._lock:
            return DelivererStats(
                destination=self.destination,
                connected=bool(self.link.connected),
                published=self._published,
                acknowledged=self._acknowledged,
                resent_after_timeout=self._timed_out,
                in_flight=len(self._by_mid),
                refused=self._refused,
                unsendable=self._unsendable,
            )

    # -- link callbacks (network thread)

    def _on_ack(self, mid: int) -> None:
        with self._lock:
            entry = self._by_mid.pop(mid, None)
            if entry is None:
                # the ack overtook the registration of its publish (or belongs to another publisher on a
                # shared link); kept briefly
                now = time.monotonic()
                self._early_acks[mid] = now
                if len(self._early_acks) > 4096:
                    self._early_acks = {m: t for m, t in self._early_acks.items() if now - t < 1.0}
                return
            self._acknowledged += 1
            self._acked.append(entry[0])
            # wake the sender when it may send a new batch or when everything is acknowledged
            wake = len(self._acked) == self._wake_after or not self._by_mid
        if wake:
            self._wake.set()

    def _pass_acks(self) -> None:
        with self._lock:
            acked, self._acked = self._acked, []
        if acked:
            self.outbox.mark_delivered(self.destination, acked)

    def _on_connection(self, connected: bool) -> None:
        if connected:
            now = time.monotonic()
            with self._lock:
                # the ack timeout of what was in flight counts from the reconnection
                self._by_mid = {mid: (rid, now) for mid, (rid, _) in self._by_mid.items()}
            log.info("%s link connected", self.destination)
        else:
            log.warning("%s link disconnected; %d records in flight", self.destination, len(self._by_mid))
        self._wake.set()

    # -- delivery thread

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self._step()
                self._pass_acks()
                if not busy:
                    self._wake.wait(self.idle_poll_s)
                    self._wake.clear()
            except Exception:
                log.exception("delivery to %s failed; retrying", self.destination)
                self._stop.wait(1.0)
        self._pass_acks()

    def _step(self) -> bool:
        """Send one batch; False when there was nothing to do (the caller then waits)."""
        if not self.link.connected:
            return False
        self._requeue_timed_out()
        with self._lock:
            room = self.max_in_flight - len(self._by_mid)
            busy = bool(self._by_mid)
        if room <= 0 or (busy and room < self.batch_size // 2):
            return False
        rewinds = self.outbox.rewinds(self.destination)
        if rewinds != self._rewinds:
            self._rewinds, self._cursor = rewinds, None
        records = self.outbox.pending(self.destination, min(room, self.batch_size), after=self._cursor)
        if not records:
            return False
        self.outbox.mark_in_flight(self.destination, records)
        self._cursor = records[-1].id
        topic_for, publish, qos_override = self._topic_for, self.link.publish, self._qos
        sent: list[tuple[int, str, int]] = []  # registered in small groups: one lock round per group
        for i, rec in enumerate(records):
            if self._limiter is not None:
                delay = self._limiter.delay()
                if delay > 0 and self._stop.wait(delay):
                    self._register(sent)
                    if i:
                        self.outbox.mark_sent(self.destination, records[i - 1].id)
                    self.outbox.requeue(self.destination, [r.id for r in records[i:]])
                    return True
            qos = rec.qos if qos_override is None else qos_override
            try:
                mid = publish(topic_for(rec), rec.payload, qos, rec.retain)
            except (ValueError, TypeError, KeyError) as e:
                # a record the link can never send (a topic it rejects, a payload too large): reported and
                # set aside so it does not block every record behind it
                log.error("record %s cannot be sent to %s and is skipped: %s", rec.id, self.destination, e)
                with self._lock:
                    self._unsendable += 1
                    self._acked.append(rec.id)
                continue
            if mid is None:
                self._register(sent)
                with self._lock:
                    self._refused += 1
                if i:
                    self.outbox.mark_sent(self.destination, records[i - 1].id)
                self.outbox.requeue(self.destination, [r.id for r in records[i:]])
                return False
            sent.append((mid, rec.id, qos))
            if len(sent) >= 32:
                self._register(sent)
                sent = []
        self._register(sent)
        self.outbox.mark_sent(self.destination, records[-1].id)
        return True

    def _register(self, sent: list[tuple[int, str, int]]) -> None:
        """Await the acknowledgements of what was just published (QoS0 counts as delivered at once)."""
        if not sent:
            return
        now = time.monotonic()
        with self._lock:
            self._published += len(sent)
            early_acks = self._early_acks
            for mid, record_id, qos in sent:
                if qos:
                    early = early_acks.pop(mid, None) if early_acks else None
                    if early is None or now - early >= 1.0:
                        self._by_mid[mid] = (record_id, now)
                        continue
                self._acknowledged += 1
                self._acked.append(record_id)

    def _requeue_timed_out(self) -> None:
        limit = time.monotonic() - self.ack_timeout_s
        ids: list[str] = []
        with self._lock:
            # entries are in the order they were sent (a reconnect resets them all to one time),
            # so the late ones are at the front
            for rid, sent in self._by_mid.values():
                if sent >= limit:
                    break
                ids.append(rid)
            for mid in list(self._by_mid)[: len(ids)]:
                del self._by_mid[mid]
            self._timed_out += len(ids)
        if ids:
            log.warning(
                "%d records to %s not acknowledged within %.0f s; sending again",
                len(ids),
                self.destination,
                self.ack_timeout_s,
            )
            self.outbox.requeue(self.destination, ids)
