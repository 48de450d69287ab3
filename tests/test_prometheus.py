"""The Prometheus endpoint: its text exposition, and a real Prometheus scraping it and answering a query."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prometheus_client", reason="the prometheus extra (prometheus-client) is not installed")

from gateway.broker import free_port
from gateway.integrations import IntegrationContext, PipelineDescription
from gateway.integrations.config import PrometheusConfig
from gateway.integrations.prometheus import PrometheusEndpoint

DOC: dict[str, Any] = {
    "v": 1,
    "ts": 1.0,
    "gateway": "gw-prom",
    "uptime_s": 12.5,
    "process": {"rss_mb": 64.0, "cpu_percent": 7.5, "threads": 9},
    "mqtt": {"connected": True, "connects": 1, "disconnects": 0, "unrouted": 2},
    "pipelines": {
        "traffic": {"in": 120, "processed": 118, "out": 40, "rejected": 1, "dropped": 1, "errors": 0,
                    "latency_ms": {"p50": 12.0, "p95": 30.0}, "queue": {"depth": 3, "size": 8, "policy": "keep_newest"}},
    },
}  # fmt: skip


@pytest.fixture
def endpoint() -> Iterator[PrometheusEndpoint]:
    ctx = IntegrationContext(
        "gw-prom",
        "edge/gw-prom",
        lambda *a: None,
        (PipelineDescription("traffic", "traffic_counting"),),
        version="1.2.3",
    )
    ep = PrometheusEndpoint(PrometheusConfig(enabled=True, host="127.0.0.1", port=free_port()), ctx)
    ep.start()
    try:
        yield ep
    finally:
        ep.stop()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def test_exposition_has_the_metrics_topic_figures(endpoint: PrometheusEndpoint) -> None:
    assert 'edge_gateway_info{gateway="gw-prom",version="1.2.3"} 1.0' in scrape(endpoint.port)
    endpoint.on_metrics(DOC)
    text = scrape(endpoint.port)
    assert (
        'edge_gateway_pipeline_messages_total{gateway="gw-prom",pipeline="traffic",plugin="traffic_counting",stage="processed"} 118.0'
        in text
    )
    assert (
        'edge_gateway_pipeline_messages_total{gateway="gw-prom",pipeline="traffic",plugin="traffic_counting",stage="dropped"} 1.0'
        in text
    )
    assert 'edge_gateway_pipeline_latency_seconds{gateway="gw-prom",pipeline="traffic",quantile="0.95"} 0.03' in text
    assert 'edge_gateway_pipeline_queue_depth{gateway="gw-prom",pipeline="traffic"} 3.0' in text
    assert 'edge_gateway_process_resident_memory_bytes{gateway="gw-prom"} 6.7108864e+07' in text
    assert 'edge_gateway_mqtt_unrouted_messages_total{gateway="gw-prom"} 2.0' in text
    assert "# TYPE edge_gateway_pipeline_messages_total counter" in text


def _prometheus_binary() -> str:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("the prometheus server is not installed (Debian: apt-get install prometheus)")
    return exe


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_real_prometheus_scrapes_the_message_counter(endpoint: PrometheusEndpoint, tmp_path: Path) -> None:
    exe = _prometheus_binary()
    endpoint.on_metrics(DOC)
    web = free_port()
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: edge\n    static_configs:\n      - targets: ['127.0.0.1:{endpoint.port}']\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - owned by the child process
    proc = subprocess.Popen(
        [exe, f"--config.file={conf}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{web}"],
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        query = urllib.parse.quote('edge_gateway_pipeline_messages_total{pipeline="traffic",stage="processed"}')
        deadline = time.monotonic() + 60
        result: list[Any] = []
        while time.monotonic() < deadline and not result:
            time.sleep(0.5)
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                answer = _get_json(f"http://127.0.0.1:{web}/api/v1/query?query={query}")
            except OSError:
                continue
            result = answer["data"]["result"]
        assert result, "prometheus never returned the counter"
        series = result[0]
        assert series["metric"]["gateway"] == "gw-prom" and series["metric"]["job"] == "edge"
        assert float(series["value"][1]) == 118.0
        targets = _get_json(f"http://127.0.0.1:{web}/api/v1/targets")["data"]["activeTargets"]
        assert targets[0]["health"] == "up"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
