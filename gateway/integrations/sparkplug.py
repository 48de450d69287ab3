"""A Sparkplug B edge node: the gateway as an edge node, each pipeline as one of its devices.

Follows the Eclipse Sparkplug 3.0 session rules on a connection of its own (MQTT 3.1.1, clean session):

* the **NDEATH** certificate is the connection's Last Will and carries ``bdSeq``; ``bdSeq`` goes up by one
  (0-255) with every new connection and is kept across restarts in the data directory, and a clean stop
  publishes the same NDEATH before disconnecting;
* after subscribing to its commands (``NCMD``/``DCMD``), the node publishes **NBIRTH** (``seq`` 0, the same
  ``bdSeq``, ``Node Control/Rebirth``, node metrics) and one **DBIRTH** per pipeline;
* values then go out as **NDATA**/**DDATA** with only the changed metrics, ``seq`` counting 0-255 and
  wrapping; a metric never seen before (a new anomaly series) re-births its device (DDEATH, DBIRTH);
* ``Node Control/Rebirth`` = true in an NCMD re-publishes every birth certificate.

Device metrics: ``Pipeline/*`` counters from the metrics document, ``State/<key>/<field>`` from the
pipeline's State outputs, ``Events/<type>`` counts and ``Events/Last type``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.reasoncodes import ReasonCode

from gateway.integrations import Integration, IntegrationContext
from gateway.integrations.client import make_client
from gateway.integrations.config import SparkplugConfig
from gateway.integrations.sparkplug_proto import DataType, Payload
from gateway.messages import Event, Output, State

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"
_U64 = (1 << 64) - 1
_INT_TYPES = {DataType.Int8, DataType.Int16, DataType.Int32, DataType.UInt8, DataType.UInt16, DataType.UInt32}
_LONG_TYPES = {DataType.Int64, DataType.UInt64, DataType.DateTime}
_COUNTERS = (("in", "In"), ("processed", "Processed"), ("out", "Out"), ("rejected", "Rejected"),
             ("dropped", "Dropped"), ("errors", "Errors"))  # fmt: skip


def now_ms() -> int:
    return int(time.time() * 1000)


def set_value(metric: Any, datatype: int, value: Any) -> None:
    """Fill a ``Payload.Metric``'s datatype and value field (``None`` is sent as ``is_null``)."""
    metric.datatype = datatype
    if value is None:
        metric.is_null = True
    elif datatype == DataType.Boolean:
        metric.boolean_value = bool(value)
    elif datatype in (DataType.String, DataType.Text):
        metric.string_value = str(value)
    elif datatype == DataType.Float:
        metric.float_value = float(value)
    elif datatype == DataType.Double:
        metric.double_value = float(value)
    elif datatype in _INT_TYPES:
        metric.int_value = int(value) & 0xFFFFFFFF
    elif datatype in _LONG_TYPES:
        metric.long_value = int(value) & _U64
    else:
        raise ValueError(f"unsupported Sparkplug datatype {datatype}")


def metric_value(metric: Any) -> Any:
    """The Python value of a decoded ``Payload.Metric``."""
    if metric.is_null:
        return None
    kind = metric.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(metric, kind)
    if kind == "long_value" and metric.datatype == DataType.Int64 and int(value) >= 1 << 63:
        return int(value) - (1 << 64)
    return value


def datatype_of(value: Any) -> int | None:
    """The Sparkplug datatype for a State field, or None when it is not a scalar."""
    if isinstance(value, bool):
        return DataType.Boolean
    if isinstance(value, int):
        return DataType.Int64
    if isinstance(value, float):
        return DataType.Double
    if isinstance(value, str):
        return DataType.String
    return None


@dataclass
class MetricValue:
    """The current value of one metric and its Sparkplug datatype."""

    datatype: int
    value: Any
    ts: int = field(default_factory=now_ms)


@dataclass
class Device:
    """One pipeline as a Sparkplug device: its metrics, what changed since the last DDATA, whether it is born."""

    name: str
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    born: bool = False
    needs_birth: bool = True

    def update(self, name: str, datatype: int, value: Any) -> None:
        ts = now_ms()
        cur = self.metrics.get(name)
        if cur is None:
            self.metrics[name] = MetricValue(datatype, value, ts)
            self.needs_birth = True
            return
        if cur.datatype != datatype:
            if cur.datatype == DataType.Double and datatype == DataType.Int64:
                value, datatype = float(value), DataType.Double  # an integral float: keep the type
            elif value is not None:
                cur.datatype = datatype
                self.needs_birth = True
        if cur.value != value:
            cur.value, cur.ts = value, ts
            self.dirty.add(name)


class SparkplugEdgeNode(Integration):
    """Publishes the gateway as a Sparkplug B edge node on its own MQTT connection."""

    name = "sparkplug"

    def __init__(self, cfg: SparkplugConfig, context: IntegrationContext) -> None:
        self.cfg = cfg
        self.ctx = context
        self.group = cfg.group_id
        self.node_id = cfg.edge_node_id or context.gateway_id
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._started_at = time.time()
        self.seq = 0
        self.bdseq_path: Path | None = None if context.data_dir is None else context.data_dir / "sparkplug.json"
        self.bdseq = self._next_bdseq()
        self.node = Device("")
        self.node.update("Properties/Version", DataType.String, context.version)
        self.node.update("Properties/Gateway id", DataType.String, context.gateway_id)
        for metric, dt in (("Process/RSS MB", DataType.Double), ("Process/CPU %", DataType.Double),
                           ("Gateway/Uptime s", DataType.Double), ("MQTT/Connected", DataType.Boolean)):  # fmt: skip
            self.node.update(metric, dt, None)
        self.devices: dict[str, Device] = {}
        for p in context.pipelines:
            d = self._device(p.name)
            d.update("Pipeline/Plugin", DataType.String, p.plugin)
        self.connected = threading.Event()
        self._stopping = False
        mqtt_cfg = cfg.broker(context.mqtt)
        self.client = make_client(mqtt_cfg, f"{context.client_id}-sparkplug", context.base_dir, v5=False)
        self._mqtt = mqtt_cfg
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._set_will()
        self._flusher: threading.Thread | None = None

    # -- topics and payloads ----------------------------------------------------------------------------
    def topic(self, kind: str, device: str | None = None) -> str:
        base = f"{NAMESPACE}/{self.group}/{kind}/{self.node_id}"
        return base if device is None else f"{base}/{device}"

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) % 256
        return seq

    def _payload(self, metrics: Mapping[str, MetricValue], seq: int | None) -> bytes:
        p = Payload()
        p.timestamp = now_ms()
        if seq is not None:
            p.seq = seq
        for name, mv in metrics.items():
            m = p.metrics.add()
            m.name = name
            m.timestamp = mv.ts
            set_value(m, mv.datatype, mv.value)
        return bytes(p.SerializeToString())

    def death_payload(self) -> bytes:
        """The NDEATH certificate: only ``bdSeq`` (no ``seq``, per the specification)."""
        return self._payload({BDSEQ: MetricValue(DataType.UInt64, self.bdseq)}, None)

    def _set_will(self) -> None:
        self.client.will_set(self.topic("NDEATH"), self.death_payload(), qos=1, retain=False)

    def _next_bdseq(self) -> int:
        last = None
        if self.bdseq_path is not None and self.bdseq_path.exists():
            try:
                last = int(json.loads(self.bdseq_path.read_text())["bdSeq"])
            except (ValueError, KeyError, TypeError):
                log.warning("sparkplug: unreadable %s; bdSeq starts at 0", self.bdseq_path)
        value = 0 if last is None else (last + 1) % 256
        self._save_bdseq(value)
        return value

    def _save_bdseq(self, value: int) -> None:
        if self.bdseq_path is None:
            return
        try:
            self.bdseq_path.parent.mkdir(parents=True, exist_ok=True)
            self.bdseq_path.write_text(json.dumps({"bdSeq": value}))
        except OSError as e:
            log.warning("sparkplug: cannot keep bdSeq in %s: %s", self.bdseq_path, e)

    def _device(self, name: str) -> Device:
        d = self.devices.get(name)
        if d is None:
            d = self.devices[name] = Device(name)
            for _key, label in _COUNTERS:
                d.update(f"Pipeline/{label}", DataType.UInt64, 0)
            d.update("Pipeline/Queue depth", DataType.UInt64, 0)
            d.update("Pipeline/Latency p50 ms", DataType.Double, None)
            d.update("Pipeline/Latency p95 ms", DataType.Double, None)
        return d

    # -- births -----------------------------------------------------------------------------------------
    def _publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=0, retain=False)

    def birth(self) -> None:
        """NBIRTH (seq 0) and a DBIRTH for every device: at connect and on a rebirth request."""
        with self._lock:
            if not self.connected.is_set():
                return
            self.seq = 0
            metrics = {
                BDSEQ: MetricValue(DataType.UInt64, self.bdseq),
                REBIRTH: MetricValue(DataType.Boolean, False),
                **self.node.metrics,
            }
            self._publish(self.topic("NBIRTH"), self._payload(metrics, self._next_seq()))
            self.node.dirty.clear()
            self.node.born = True
            for d in self.devices.values():
                self._device_birth(d, death_first=False)
        log.info("sparkplug: born as %s/%s (bdSeq %d) with %d device(s)", self.group, self.node_id, self.bdseq,
                 len(self.devices))  # fmt: skip

    def _device_birth(self, d: Device, *, death_first: bool) -> None:
        if death_first and d.born:
            self._publish(self.topic("DDEATH", d.name), self._payload({}, self._next_seq()))
        self._publish(self.topic("DBIRTH", d.name), self._payload(d.metrics, self._next_seq()))
        d.born, d.needs_birth = True, False
        d.dirty.clear()

    def flush(self) -> None:
        """Publish what changed: NDATA for the node, DDATA (or a re-birth) per device."""
        with self._lock:
            if not (self.connected.is_set() and self.node.born):
                return
            if self.node.dirty:
                changed = {n: self.node.metrics[n] for n in sorted(self.node.dirty)}
                self._publish(self.topic("NDATA"), self._payload(changed, self._next_seq()))
                self.node.dirty.clear()
            for d in self.devices.values():
                if d.needs_birth:
                    self._device_birth(d, death_first=True)
                elif d.dirty:
                    changed = {n: d.metrics[n] for n in sorted(d.dirty)}
                    self._publish(self.topic("DDATA", d.name), self._payload(changed, self._next_seq()))
                    d.dirty.clear()

    # -- connection -------------------------------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self._mqtt.host, self._mqtt.port, keepalive=self._mqtt.keepalive_s)
        self.client.loop_start()
        if self.cfg.publish_interval_s > 0:
            self._flusher = threading.Thread(target=self._flush_loop, name="sparkplug-flush", daemon=True)
            self._flusher.start()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.cfg.publish_interval_s):
            try:
                self.flush()
            except Exception:
                log.exception("sparkplug: publishing data failed")

    def stop(self) -> None:
        """Publish the node's death certificate, then disconnect."""
        self._stop.set()
        with self._lock:
            self._stopping = True
            if self.connected.is_set():
                self.flush()
                info = self.client.publish(self.topic("NDEATH"), self.death_payload(), qos=1, retain=False)
            else:
                info = None
        if info is not None:
            with contextlib.suppress(RuntimeError, ValueError):  # not queued, or the connection dropped meanwhile
                info.wait_for_publish(3.0)
        self.client.disconnect()
        self.client.loop_stop()
        if self._flusher is not None:
            self._flusher.join(2.0)

    def wait_born(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.node.born and self.connected.is_set():
                return True
            time.sleep(0.02)
        return False

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            log.warning("sparkplug: connection refused: %s", rc)
            return
        client.subscribe([(self.topic("NCMD"), 1), (self.topic("DCMD") + "/+", 1)])
        self.connected.set()
        self.birth()

    def _on_disconnect(self, *_: Any) -> None:
        with self._lock:
            was = self.connected.is_set()
            self.connected.clear()
            self.node.born = False
            for d in self.devices.values():
                d.born = False
            if was and not self._stopping:
                # the next connection is a new session: a new bdSeq, and a Will that carries it
                self.bdseq = (self.bdseq + 1) % 256
                self._save_bdseq(self.bdseq)
                self._set_will()
                log.warning("sparkplug: disconnected; reconnecting with bdSeq %d", self.bdseq)

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            payload = Payload.FromString(msg.payload)
        except Exception:
            log.warning("sparkplug: undecodable command on %s", msg.topic)
            return
        if msg.topic == self.topic("NCMD"):
            for m in payload.metrics:
                if m.name == REBIRTH and metric_value(m) is True:
                    log.info("sparkplug: rebirth requested")
                    self.birth()
                    return
        log.info("sparkplug: command on %s ignored (%s)", msg.topic, ", ".join(m.name for m in payload.metrics))

    # -- gateway hooks ----------------------------------------------------------------------------------
    def on_outputs(self, pipeline: str, plugin: str, outputs: Sequence[Output]) -> None:
        with self._lock:
            d = self._device(pipeline)
            for out in outputs:
                if isinstance(out, State):
                    base = "State" if out.key is None else f"State/{out.key}"
                    for name, value in _flatten(out.data, base, 4):
                        dt = datatype_of(value)
                        if dt is not None:
                            d.update(name, dt, value)
                elif isinstance(out, Event):
                    counter = f"Events/{out.type}"
                    cur = d.metrics.get(counter)
                    d.update(counter, DataType.UInt64, (cur.value or 0) + 1 if cur else 1)
                    d.update("Events/Last type", DataType.String, out.type)
        if self.cfg.publish_interval_s == 0:
            self.flush()

    def on_metrics(self, doc: Mapping[str, Any]) -> None:
        with self._lock:
            process = doc.get("process", {}) or {}
            self.node.update("Process/RSS MB", DataType.Double, _num(process.get("rss_mb")))
            self.node.update("Process/CPU %", DataType.Double, _num(process.get("cpu_percent")))
            self.node.update("Gateway/Uptime s", DataType.Double, _num(doc.get("uptime_s")))
            self.node.update("MQTT/Connected", DataType.Boolean, (doc.get("mqtt") or {}).get("connected"))
            for name, p in (doc.get("pipelines") or {}).items():
                d = self._device(name)
                for key, label in _COUNTERS:
                    if isinstance(p.get(key), int):
                        d.update(f"Pipeline/{label}", DataType.UInt64, p[key])
                lat = p.get("latency_ms") or {}
                d.update("Pipeline/Latency p50 ms", DataType.Double, _num(lat.get("p50")))
                d.update("Pipeline/Latency p95 ms", DataType.Double, _num(lat.get("p95")))
                depth = (p.get("queue") or {}).get("depth")
                if isinstance(depth, int):
                    d.update("Pipeline/Queue depth", DataType.UInt64, depth)
        if self.cfg.publish_interval_s == 0:
            self.flush()


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _flatten(data: Mapping[str, Any], base: str, depth: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in data.items():
        name = f"{base}/{k}"
        if isinstance(v, Mapping):
            if depth > 1:
                out.extend(_flatten(v, name, depth - 1))
        elif str(k) not in ("ts", "timestamp"):
            out.append((name, v))
    return out
