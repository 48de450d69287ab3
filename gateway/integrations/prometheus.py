"""A Prometheus ``/metrics`` endpoint with the figures of the ``<prefix>/metrics`` topic.

Serves the latest metrics document in Prometheus' text format (prometheus-client, the ``prometheus`` extra),
from its own registry so nothing else of the process leaks in. Series, all labelled ``gateway``:

* ``edge_gateway_pipeline_messages_total{pipeline,plugin,stage}`` — ``stage`` is ``in``, ``processed``,
  ``out`` (outputs), ``rejected``, ``dropped`` or ``errors``;
* ``edge_gateway_pipeline_latency_seconds{pipeline,quantile}`` (0.5 and 0.95),
  ``edge_gateway_pipeline_queue_depth`` and ``..._queue_capacity``;
* ``edge_gateway_process_resident_memory_bytes``, ``edge_gateway_process_cpu_percent``,
  ``edge_gateway_process_threads``, ``edge_gateway_uptime_seconds``;
* ``edge_gateway_mqtt_connected``, ``edge_gateway_mqtt_connects_total``, ``edge_gateway_mqtt_disconnects_total``,
  ``edge_gateway_mqtt_unrouted_messages_total``;
* ``edge_gateway_info{version}`` = 1 and ``edge_gateway_metrics_age_seconds`` (how old the figures are).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from gateway.integrations import Integration, IntegrationContext
from gateway.integrations.config import PrometheusConfig
from gateway.messages import Output

log = logging.getLogger(__name__)
STAGES = ("in", "processed", "out", "rejected", "dropped", "errors")


class MetricsDocCollector:
    """A prometheus-client collector that turns the latest metrics document into metric families."""

    def __init__(self, gateway_id: str, version: str, plugins: Mapping[str, str]) -> None:
        self.gateway_id = gateway_id
        self.version = version
        self.plugins = dict(plugins)
        self._doc: Mapping[str, Any] = {}
        self._at: float | None = None
        self._lock = threading.Lock()

    def update(self, doc: Mapping[str, Any]) -> None:
        with self._lock:
            self._doc, self._at = doc, time.time()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self._lock:
            doc, at = self._doc, self._at
        g = self.gateway_id
        info = GaugeMetricFamily("edge_gateway_info", "Gateway version.", labels=["gateway", "version"])
        info.add_metric([g, self.version], 1)
        yield info
        if at is None:
            return
        age = GaugeMetricFamily("edge_gateway_metrics_age_seconds", "Age of the figures served.", labels=["gateway"])
        age.add_metric([g], max(0.0, time.time() - at))
        yield age

        messages = CounterMetricFamily(
            "edge_gateway_pipeline_messages", "Messages per pipeline and stage since start.",
            labels=["gateway", "pipeline", "plugin", "stage"],
        )  # fmt: skip
        latency = GaugeMetricFamily(
            "edge_gateway_pipeline_latency_seconds", "Processing latency over the recent window.",
            labels=["gateway", "pipeline", "quantile"],
        )  # fmt: skip
        depth = GaugeMetricFamily(
            "edge_gateway_pipeline_queue_depth", "Queued input messages.", labels=["gateway", "pipeline"]
        )
        capacity = GaugeMetricFamily(
            "edge_gateway_pipeline_queue_capacity", "Input queue size.", labels=["gateway", "pipeline"]
        )
        for name, p in (doc.get("pipelines") or {}).items():
            plugin = self.plugins.get(name, "")
            for stage in STAGES:
                if isinstance(p.get(stage), (int, float)):
                    messages.add_metric([g, name, plugin, stage], p[stage])
            for q, key in (("0.5", "p50"), ("0.95", "p95")):
                v = (p.get("latency_ms") or {}).get(key)
                if isinstance(v, (int, float)):
                    latency.add_metric([g, name, q], v / 1000.0)
            queue = p.get("queue") or {}
            if isinstance(queue.get("depth"), int):
                depth.add_metric([g, name], queue["depth"])
            if isinstance(queue.get("size"), int):
                capacity.add_metric([g, name], queue["size"])
        yield from (messages, latency, depth, capacity)

        process = doc.get("process") or {}
        for metric, key, scale, text in (
            ("edge_gateway_process_resident_memory_bytes", "rss_mb", 2**20, "Resident memory."),
            ("edge_gateway_process_cpu_percent", "cpu_percent", 1, "CPU use since the previous figures."),
            ("edge_gateway_process_threads", "threads", 1, "Threads of the process."),
        ):
            if isinstance(process.get(key), (int, float)):
                fam = GaugeMetricFamily(metric, text, labels=["gateway"])
                fam.add_metric([g], process[key] * scale)
                yield fam
        if isinstance(doc.get("uptime_s"), (int, float)):
            fam = GaugeMetricFamily(
                "edge_gateway_uptime_seconds", "Seconds since the gateway started.", labels=["gateway"]
            )
            fam.add_metric([g], doc["uptime_s"])
            yield fam
        mqtt = doc.get("mqtt") or {}
        if "connected" in mqtt:
            fam = GaugeMetricFamily(
                "edge_gateway_mqtt_connected", "1 while connected to the broker.", labels=["gateway"]
            )
            fam.add_metric([g], 1 if mqtt["connected"] else 0)
            yield fam
        for metric, key, text in (
            ("edge_gateway_mqtt_connects", "connects", "Connections made."),
            ("edge_gateway_mqtt_disconnects", "disconnects", "Connections lost."),
            ("edge_gateway_mqtt_unrouted_messages", "unrouted", "Received messages no pipeline takes."),
        ):
            if isinstance(mqtt.get(key), int):
                c = CounterMetricFamily(metric, text, labels=["gateway"])
                c.add_metric([g], mqtt[key])
                yield c


class PrometheusEndpoint(Integration):
    """Serves ``/metrics`` over HTTP from the gateway's metrics documents."""

    name = "prometheus"

    def __init__(self, cfg: PrometheusConfig, context: IntegrationContext) -> None:
        try:
            from prometheus_client import CollectorRegistry
        except ImportError as e:
            raise RuntimeError(
                "prometheus: enabled, but prometheus-client is not installed (pip install 'edge-ai-gateway[prometheus]')"
            ) from e
        self.cfg = cfg
        self.collector = MetricsDocCollector(
            context.gateway_id, context.version, {p.name: p.plugin for p in context.pipelines}
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = cfg.port

    def start(self) -> None:
        from prometheus_client import start_http_server

        started = start_http_server(self.cfg.port, addr=self.cfg.host, registry=self.registry)
        if isinstance(started, tuple):  # prometheus-client >= 0.17 returns (server, thread)
            self._server, self._thread = started
            self.port = self._server.server_port
        log.info("prometheus: serving /metrics on %s:%d", self.cfg.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def on_metrics(self, doc: Mapping[str, Any]) -> None:
        self.collector.update(doc)

    def on_outputs(self, pipeline: str, plugin: str, outputs: Sequence[Output]) -> None:
        return None
