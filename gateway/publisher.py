"""The one place outputs become MQTT messages: topics, envelopes, QoS and retention.

Topic and payload contract (version 1; JSON Schemas in ``gateway/schemas/``):

========================================  ====  ========  =============================================
topic                                     QoS   retained  payload
========================================  ====  ========  =============================================
``<prefix>/status``                       1     yes       ``online`` / ``offline`` (``offline`` is the Last Will)
``<prefix>/info``                         1     yes       gateway version, pipelines, models and delegates
``<prefix>/metrics``                      0     yes       counters per pipeline, latency, process RSS/CPU, store
``<prefix>/errors``                       1     no        rejected input with the reason
``<prefix>/<pipeline>/event``             1     no        an event, with a unique sortable ``id``
``<prefix>/<pipeline>/state[/<key>]``     1     yes       the latest value
``<prefix>/<pipeline>/summary``           1     no        aggregates over ``[start, end)``, with ``id``
``<prefix>/<pipeline>/<channel>``         0     no        telemetry streams (e.g. ``score``)
========================================  ====  ========  =============================================
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gateway.ids import new_id
from gateway.messages import Event, Output, State, Summary, Telemetry

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _clean(o: Any) -> Any:
    """NaN and infinities become null: strict JSON consumers reject them."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Mapping):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.generic):
        return _clean(o.item())
    return o


def encode(doc: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes; numpy values converted, non-finite floats as null."""
    try:
        return json.dumps(doc, separators=(",", ":"), default=_default, allow_nan=False).encode()
    except ValueError:
        return json.dumps(_clean(doc), separators=(",", ":"), default=_default).encode()


def topic_level(key: str) -> str:
    """A key made safe as topic levels (no wildcards, no empty levels)."""
    return "/".join(part.replace("+", "_").replace("#", "_") or "_" for part in key.split("/"))


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A message ready to publish. ``kind`` says whether it is stored first (event, summary) or not."""

    id: str
    kind: str
    pipeline: str | None
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created_at: float


class ResultSink(Protocol):
    """Where the publisher hands records: straight to MQTT, or the outbox that stores them first."""

    def submit(self, records: list[OutRecord]) -> None: ...


class Transport(Protocol):
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None: ...


class StateThrottle:
    """Publishes each state topic at most once per interval; the latest value always goes out.

    A busy pipeline updating the same key thousands of times a second would otherwise spend most of its
    time publishing values that are replaced before anyone reads them.
    """

    def __init__(self, transport: Transport, interval_s: float) -> None:
        self._transport = transport
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self._pending: dict[str, Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="state-throttle", daemon=True)
            self._thread.start()

    def publish(self, topic: str, doc: Mapping[str, Any]) -> None:
        """Publish ``doc`` on ``topic`` now, or hold it (replacing what is held) until the interval ends.

        Documents are encoded only when they go out: most of a busy key's values never do.
        """
        if self._interval <= 0:
            self._transport.publish(topic, encode(doc), 1, True)
            return
        now = time.monotonic()
        with self._lock:
            if topic in self._pending or now - self._last.get(topic, -1e9) < self._interval:
                self._pending[topic] = doc
                return
            self._last[topic] = now
            if len(self._last) > 100_000:  # bound the memory of topics seen
                self._last.clear()
        self._transport.publish(topic, encode(doc), 1, True)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            now = time.monotonic()
            for topic in pending:
                self._last[topic] = now
        for topic, doc in pending.items():
            self._transport.publish(topic, encode(doc), 1, True)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self.flush()

    def close(self) -> None:
        self.flush()
        self._closed = True
        self._wake.set()


class DirectSink:
    """Publishes at once; while disconnected, paho's own bounded queue holds QoS1 messages."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.not_accepted = 0

    def submit(self, records: list[OutRecord]) -> None:
        for r in records:
            if self._transport.publish(r.topic, r.payload, r.qos, r.retain) is None:
                self.not_accepted += 1


@dataclass(frozen=True, slots=True)
class Source:
    """Who produced an output: the pipeline, its plugin and the model in use."""

    pipeline: str
    plugin: str
    model: Mapping[str, str] | None


class Publisher:
    """Turns plugin outputs and gateway messages into enveloped MQTT records."""

    def __init__(
        self,
        gateway_id: str,
        prefix: str,
        stored: ResultSink,
        live: Transport,
        clock: Callable[[], float] = time.time,
        state_min_interval_s: float = 0.0,
    ) -> None:
        self.gateway_id = gateway_id
        self.prefix = prefix
        self._stored = stored
        self._live = live
        self._clock = clock
        self._state = StateThrottle(live, state_min_interval_s)
        self._topics: dict[tuple[str, ...], str] = {}

    # -- topics ---------------------------------------------------------------------------------------
    def topic(self, *levels: str) -> str:
        """``<prefix>/<levels...>`` (cached: the same few topics are built for every output)."""
        t = self._topics.get(levels)
        if t is None:
            t = "/".join((self.prefix, *(topic_level(level) for level in levels)))
            if len(self._topics) < 100_000:
                self._topics[levels] = t
        return t

    @property
    def status_topic(self) -> str:
        return self.topic("status")

    # -- outputs --------------------------------------------------------------------------------------
    def publish_outputs(self, source: Source, outputs: list[Output]) -> None:
        now = self._clock()
        stored: list[OutRecord] = []
        base = {"v": SCHEMA_VERSION, "gateway": self.gateway_id, "pipeline": source.pipeline, "plugin": source.plugin}
        for out in outputs:
            if isinstance(out, Event):
                rid = new_id(now)
                doc = {
                    **base,
                    "id": rid,
                    "ts": out.ts if out.ts is not None else now,
                    "type": out.type,
                    "model": source.model,
                    "data": out.data,
                }
                stored.append(
                    OutRecord(
                        rid, "event", source.pipeline, self.topic(source.pipeline, "event"), encode(doc), 1, False, now
                    )
                )
            elif isinstance(out, Summary):
                rid = new_id(now)
                doc = {**base, "id": rid, "start": out.start, "end": out.end, "model": source.model, "data": out.data}
                stored.append(
                    OutRecord(
                        rid,
                        "summary",
                        source.pipeline,
                        self.topic(source.pipeline, "summary"),
                        encode(doc),
                        1,
                        False,
                        now,
                    )
                )
            elif isinstance(out, State):
                levels = ("state",) if out.key is None else ("state", out.key)
                doc = {**base, "ts": now, "key": out.key, "data": out.data}
                self._state.publish(self.topic(source.pipeline, *levels), doc)
            elif isinstance(out, Telemetry):
                doc = {"v": SCHEMA_VERSION, "ts": now, "pipeline": source.pipeline, "data": out.data}
                self._live.publish(self.topic(source.pipeline, topic_level(out.channel)), encode(doc), 0, False)
            else:
                raise TypeError(f"not an output: {out!r}")
        if stored:
            self._stored.submit(stored)

    def flush(self) -> None:
        """Publish every state held back by the throttle now (at shutdown)."""
        self._state.flush()

    def close(self) -> None:
        self._state.close()

    # -- gateway messages -----------------------------------------------------------------------------
    def error(self, reason: str, *, pipeline: str | None = None, topic: str | None = None, size: int = 0) -> None:
        now = self._clock()
        doc = {
            "v": SCHEMA_VERSION,
            "id": new_id(now),
            "ts": now,
            "gateway": self.gateway_id,
            "pipeline": pipeline,
            "topic": topic,
            "reason": reason,
            "size": size,
        }
        self._live.publish(self.topic("errors"), encode(doc), 1, False)

    def metrics(self, doc: Mapping[str, Any]) -> None:
        self._live.publish(
            self.topic("metrics"),
            encode({"v": SCHEMA_VERSION, "ts": self._clock(), "gateway": self.gateway_id, **doc}),
            0,
            True,
        )

    def info(self, doc: Mapping[str, Any]) -> None:
        self._live.publish(
            self.topic("info"), encode({"v": SCHEMA_VERSION, "gateway": self.gateway_id, **doc}), 1, True
        )

    def online(self) -> None:
        self._live.publish(self.status_topic, b"online", 1, True)
