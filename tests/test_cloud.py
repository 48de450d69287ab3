"""Cloud sync: the cloud's own MQTT connection with TLS, the HTTPS alternative, catching up after an outage."""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.broker import LocalBroker, free_port, mosquitto_binary
from gateway.cloud import CloudSync, HttpsLink
from gateway.store.config import CloudConfig, CloudHttps, StoreConfig
from gateway.store.memory import MemoryBackend
from gateway.store.outbox import Outbox
from gateway.store.sqlite import SqliteBackend
from tests.mqtt_helpers import make_test_pki, run_openssl
from tests.test_outbox_delivery import SessionCollector, wait_for


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def summary(i: int) -> bytes:
    return json.dumps({"id": f"s{i:05d}", "counts": {"car": i}}).encode()


# -- configuration ---------------------------------------------------------------------------------


def test_cloud_config_needs_exactly_one_destination_when_enabled() -> None:
    with pytest.raises(ValidationError, match="neither mqtt nor https"):
        CloudConfig(enabled=True)
    with pytest.raises(ValidationError, match="either mqtt or https"):
        CloudConfig(enabled=True, mqtt={"host": "h"}, https={"url": "https://x"})
    assert CloudConfig(enabled=True, https={"url": "https://x/{topic}"}).https is not None


def test_topic_template_placeholders_are_checked() -> None:
    cfg = CloudConfig(topic_template="site-7/{gateway_id}/{pipeline}/{kind}")
    assert cfg.topic_for("gw1", "traffic", "summary") == "site-7/gw1/traffic/summary"
    with pytest.raises(ValidationError, match="only"):
        CloudConfig(topic_template="x/{site}/{kind}")
    with pytest.raises(ValidationError, match="wildcards"):
        CloudConfig(topic_template="x/+/{kind}")


def test_store_and_cloud_schemas_document_every_field() -> None:
    for model in (StoreConfig, CloudConfig):
        schema = model.model_json_schema()

        def walk(node: dict[str, Any], path: str) -> None:
            for name, prop in node.get("properties", {}).items():
                assert prop.get("title") and prop.get("description"), f"{path}.{name} lacks a title or description"

        walk(schema, model.__name__)
        for name, sub in schema.get("$defs", {}).items():
            walk(sub, name)


# -- certificates ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return make_test_pki(tmp_path_factory.mktemp("pki"))


# -- MQTT ------------------------------------------------------------------------------------------------


@pytest.fixture
def needs_mosquitto() -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")


def test_summaries_reach_the_cloud_broker_over_mutual_tls(
    needs_mosquitto: None, pki: dict[str, Path], tmp_path: Path
) -> None:
    tls = {
        "cafile": str(pki["ca_crt"]),
        "certfile": str(pki["server_crt"]),
        "keyfile": str(pki["server_key"]),
        "require_certificate": "true",
    }
    with LocalBroker(workdir=tmp_path / "cloud", tls=tls, persistence=False) as cloud:
        # a reader on the same broker, with its own client certificate
        reader = SessionCollector(
            "127.0.0.1",
            cloud.port,
            "gateways/#",
            "cloud-reader",
            tls={"ca_certs": str(pki["ca_crt"]), "certfile": str(pki["client_crt"]), "keyfile": str(pki["client_key"])},
        )
        ob = Outbox(MemoryBackend(), StoreConfig(flush_interval_s=0.001))
        cfg = CloudConfig(
            enabled=True,
            mqtt={
                "host": "127.0.0.1",
                "port": cloud.port,
                "tls": {"ca_file": pki["ca_crt"], "cert_file": pki["client_crt"], "key_file": pki["client_key"]},
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 0.5,
            },
            rate_limit_per_s=None,
        )
        sync = CloudSync(ob, cfg, "gw-7").start()
        try:
            for i in range(5):
                ob.put("summary", "traffic", "edge/gw-7/traffic/summary", summary(i), destinations=("local", "cloud"))
            ob.put("event", "traffic", "edge/gw-7/traffic/event", b"{}")  # events stay on site
            assert wait_for(lambda: len(reader.received()) >= 5, 15)
            time.sleep(0.2)
            assert reader.received() == [summary(i) for i in range(5)]
            assert reader.topics == ["gateways/gw-7/traffic/summary"] * 5
            assert sync.stats()["acknowledged"] == 5
            assert ob.stats().destinations["cloud"].pending == 0
        finally:
            sync.stop()
            reader.close()
            ob.close()


def test_a_cloud_broker_with_an_unknown_ca_is_never_sent_to(
    needs_mosquitto: None, pki: dict[str, Path], tmp_path: Path
) -> None:
    tls = {"cafile": str(pki["ca_crt"]), "certfile": str(pki["server_crt"]), "keyfile": str(pki["server_key"])}
    other_ca = tmp_path / "other"
    other_ca.mkdir()
    run_openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "o.key",
        "-out",
        "o.crt",
        "-days",
        "1",
        "-subj",
        "/CN=someone-else",
        cwd=other_ca,
    )
    with LocalBroker(workdir=tmp_path / "cloud", tls=tls, persistence=False) as cloud:
        ob = Outbox(MemoryBackend(), StoreConfig(flush_interval_s=0.001))
        cfg = CloudConfig(
            enabled=True,
            mqtt={
                "host": "127.0.0.1",
                "port": cloud.port,
                "tls": {"ca_file": other_ca / "o.crt"},
                "reconnect_min_s": 0.1,
            },
        )
        sync = CloudSync(ob, cfg, "gw").start()
        try:
            ob.put("summary", "p", "t", b"secret", destinations=("cloud",))
            time.sleep(1.0)
            assert not sync.link.connected
            assert sync.stats()["published"] == 0
            assert ob.stats().destinations["cloud"].pending == 1
        finally:
            sync.stop()
            ob.close()


def test_cloud_outage_backlog_arrives_oldest_first_within_the_rate_limit(needs_mosquitto: None, tmp_path: Path) -> None:
    """Six hours of one-minute summaries produced while the cloud is unreachable (time compressed)."""
    clock = FakeClock()
    port = free_port()
    cloud = LocalBroker(port, workdir=tmp_path / "cloud", persistence=True)
    cloud.start()
    reader = SessionCollector("127.0.0.1", port, "gateways/#", "cloud-reader")
    reader.close()  # its session (and subscription) stays on the broker
    cloud.stop()  # the uplink goes down

    ob = Outbox(SqliteBackend(tmp_path / "o.db"), StoreConfig(flush_interval_s=0.001), clock=clock)
    cfg = CloudConfig(
        enabled=True,
        mqtt={"host": "127.0.0.1", "port": port, "tls": None, "reconnect_min_s": 0.1, "reconnect_max_s": 0.3},
        rate_limit_per_s=200.0,
        max_in_flight=20,
    )
    sync = CloudSync(ob, cfg, "gw").start()
    reader = None
    try:
        n = 360
        for i in range(n):
            ob.put("summary", "traffic", "edge/gw/traffic/summary", summary(i), destinations=("local", "cloud"))
            clock.now += 60.0
        ob.flush()
        time.sleep(0.3)
        s = ob.stats().destinations["cloud"]
        assert (s.pending, s.oldest_unsent_age_s) == (n, pytest.approx(n * 60.0))
        assert sync.stats()["published"] == 0

        cloud.start()  # the uplink is back; the reader's queued session is restored
        reader = SessionCollector("127.0.0.1", port, "gateways/#", "cloud-reader")
        started = time.monotonic()
        assert wait_for(lambda: ob.stats().destinations["cloud"].pending == 0, 30)
        elapsed = time.monotonic() - started
        assert wait_for(lambda: len(set(reader.received())) >= n, 15)
        got = reader.received()
        first_seen = list(dict.fromkeys(got))  # consumers de-duplicate by id
        assert first_seen == [summary(i) for i in range(n)]
        assert elapsed >= (n - 200) / 200.0  # never faster than the limit (after a burst of 200)
        assert ob.stats().destinations["cloud"].oldest_unsent_age_s is None
        assert ob.stats().destinations["local"].pending == n  # the local destination is independent
    finally:
        sync.stop()
        if reader is not None:
            reader.close()
        ob.close()
        cloud.stop()


# -- HTTPS ------------------------------------------------------------------------------------------------


class _Endpoint(http.server.ThreadingHTTPServer):
    """Records POSTs; ``fail_with`` makes it answer with that status instead."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_with: int | None = None
        self.refuse_body: bytes | None = None
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Endpoint

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = self.server.fail_with or 204
        if self.server.refuse_body is not None and body == self.server.refuse_body:
            status = 422
        if status < 300:
            self.server.received.append((self.path, dict(self.headers), body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint(pki: dict[str, Path]) -> Iterator[_Endpoint]:
    server = _Endpoint()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server_crt"], pki["server_key"])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _https_sync(ob: Outbox, endpoint: _Endpoint, pki: dict[str, Path], tmp_path: Path) -> CloudSync:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    cfg = CloudConfig(
        enabled=True,
        https={
            "url": f"https://127.0.0.1:{endpoint.server_address[1]}/ingest/{{topic}}",
            "ca_file": pki["ca_crt"],
            "token_file": token,
            "headers": {"X-Site": "7"},
            "retry_s": 0.1,
            "timeout_s": 5,
        },
        rate_limit_per_s=None,
    )
    return CloudSync(ob, cfg, "gw").start()


def test_https_posts_each_summary_in_order_with_credentials(
    endpoint: _Endpoint, pki: dict[str, Path], tmp_path: Path
) -> None:
    ob = Outbox(MemoryBackend(), StoreConfig(flush_interval_s=0.001))
    sync = _https_sync(ob, endpoint, pki, tmp_path)
    try:
        for i in range(10):
            ob.put("summary", "line-1", "t", summary(i), destinations=("cloud",))
        assert wait_for(lambda: ob.stats().destinations["cloud"].delivered == 10)
        assert [b for _, _, b in endpoint.received] == [summary(i) for i in range(10)]
        path, headers, _ = endpoint.received[0]
        assert path == "/ingest/gateways/gw/line-1/summary"
        assert headers["Authorization"] == "Bearer t0ken" and headers["X-Site"] == "7"
        assert headers["X-Edge-Topic"] == "gateways/gw/line-1/summary"
    finally:
        sync.stop()
        ob.close()


def test_https_endpoint_failures_hold_the_backlog_until_it_recovers(
    endpoint: _Endpoint, pki: dict[str, Path], tmp_path: Path
) -> None:
    ob = Outbox(MemoryBackend(), StoreConfig(flush_interval_s=0.001))
    endpoint.fail_with = 503
    sync = _https_sync(ob, endpoint, pki, tmp_path)
    try:
        for i in range(20):
            ob.put("summary", "p", "t", summary(i), destinations=("cloud",))
        assert wait_for(lambda: not sync.link.connected)
        time.sleep(0.3)
        assert ob.stats().destinations["cloud"].pending == 20 and endpoint.received == []
        endpoint.fail_with = None
        assert wait_for(lambda: ob.stats().destinations["cloud"].delivered == 20)
        assert [b for _, _, b in endpoint.received] == [summary(i) for i in range(20)]
    finally:
        sync.stop()
        ob.close()


def test_https_record_refused_for_good_is_counted_and_does_not_block_the_rest(
    endpoint: _Endpoint, pki: dict[str, Path], tmp_path: Path
) -> None:
    ob = Outbox(MemoryBackend(), StoreConfig(flush_interval_s=0.001))
    endpoint.refuse_body = summary(1)
    sync = _https_sync(ob, endpoint, pki, tmp_path)
    try:
        for i in range(3):
            ob.put("summary", "p", "t", summary(i), destinations=("cloud",))
        assert wait_for(lambda: ob.stats().destinations["cloud"].delivered == 3)
        assert [b for _, _, b in endpoint.received] == [summary(0), summary(2)]
        assert sync.stats()["refused_by_endpoint"] == 1
    finally:
        sync.stop()
        ob.close()


def test_https_link_is_a_link() -> None:
    from gateway.store.delivery import Link

    assert isinstance(HttpsLink(CloudHttps(url="https://example.invalid/x")), Link)
