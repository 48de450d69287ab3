"""End to end through a real Mosquitto and the real gateway process.

publish -> route -> decode -> plugin -> publish, validated against the payload schemas; bad input on the
errors topic; the Last Will; a clean stop; persistent-session redelivery; shared subscriptions; TLS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway.broker import LocalBroker
from tests.mqtt_helpers import Collector, GatewayProcess, base_config, make_test_pki, publish_all, write_config

PREFIX = "edge/gw-test"


def schema(name: str) -> dict[str, Any]:
    return json.loads((files("gateway") / "schemas" / f"{name}.json").read_text())


def reading(i: int, source: str = "m1") -> bytes:
    return json.dumps({"ts": 1_700_000_000 + i, "source": source, "values": {"x": i}}).encode()


def passthrough(name: str, inputs: list[str], emit: str = "event", **extra: Any) -> dict[str, Any]:
    return {"name": name, "plugin": "passthrough", "inputs": inputs, "options": {"emit": emit}, **extra}


@pytest.fixture
def gateway_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    started: list[GatewayProcess] = []

    def make(doc: dict[str, Any], name: str = "gateway") -> GatewayProcess:
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        gw = GatewayProcess(write_config(d / "gateway.yaml", doc)).start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()


def wait_online(col: Collector, prefix: str = PREFIX, n: int = 1) -> None:
    assert col.wait_for(lambda: col.on_topic(f"{prefix}/status").count(b"online") >= n, 20), "gateway never came online"


def test_readings_flow_to_every_output_kind_and_match_the_schemas(broker: LocalBroker, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    doc = base_config(
        broker.port,
        pipelines=[
            passthrough("events", ["sensors/#"], "event", summary_interval_s=1),
            passthrough("states", ["sensors/+/temp"], "state"),
        ],
    )
    col = Collector(broker.host, broker.port, [f"{PREFIX}/#"])
    gw = gateway_factory(doc)
    wait_online(col)
    publish_all(broker.host, broker.port, [("sensors/m1/temp", reading(i)) for i in range(20)])
    events = col.wait_count("/events/event", 20)
    assert col.wait_for(lambda: len(col.on_topic("/states/state/m1")) >= 1)
    col.wait_count("/events/summary", 1, 5)
    col.wait_count("/metrics", 2, 5)
    assert gw.terminate() == 0

    decoded = [json.loads(p) for p in events]
    assert [e["data"]["values"]["x"] for e in decoded] == list(range(20))  # in order
    assert len({e["id"] for e in decoded}) == 20 and [e["id"] for e in decoded] == sorted(e["id"] for e in decoded)
    for e in decoded:
        jsonschema.validate(e, schema("event"))
    for topic, _suffix, name in [
        ("/states/state/m1", None, "state"),
        ("/events/summary", None, "summary"),
        ("/metrics", None, "metrics"),
        ("/info", None, "info"),
    ]:
        payloads = col.on_topic(topic)
        assert payloads, topic
        for p in payloads:
            jsonschema.validate(json.loads(p), schema(name))
    summaries = col.json_on("/events/summary")
    assert sum(s["data"]["readings"] for s in summaries) <= 20
    metrics = col.json_on("/metrics")[-1]
    assert metrics["pipelines"]["events"]["processed"] == 20
    assert metrics["pipelines"]["states"]["processed"] == 20
    assert col.on_topic(f"{PREFIX}/status")[-1] == b"offline"


def test_bad_payloads_are_reported_and_the_gateway_keeps_going(broker: LocalBroker, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    doc = base_config(broker.port, pipelines=[passthrough("p", ["in/#"])], input={"max_payload_bytes": 1000})
    col = Collector(broker.host, broker.port, [f"{PREFIX}/#"])
    gateway_factory(doc)
    wait_online(col)
    bad = [("in/a", b"{oops"), ("in/b", b'{"values": {"x": "high"}}'), ("in/c", b"x" * 2000), ("in/d", b"")]
    publish_all(broker.host, broker.port, [*bad, ("in/ok", reading(1))])
    errors = [json.loads(p) for p in col.wait_count("/errors", 4)]
    assert len(errors) == 4
    for e in errors:
        jsonschema.validate(e, schema("error"))
    by_topic = {e["topic"]: e["reason"] for e in errors}
    assert "not valid JSON" in by_topic["in/a"]
    assert "values.x: expected a number" in by_topic["in/b"]
    assert "over the limit of 1000" in by_topic["in/c"]
    assert col.wait_count("/p/event", 1)
    m = col.wait_for(lambda: any(json.loads(p)["pipelines"]["p"]["rejected"] == 4 for p in col.on_topic("/metrics")), 5)
    assert m, "rejections not counted in metrics"


def test_last_will_marks_a_killed_gateway_offline(broker: LocalBroker, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    doc = base_config(broker.port)
    doc["mqtt"]["keepalive_s"] = 5
    col = Collector(broker.host, broker.port, [f"{PREFIX}/status"])
    gw = gateway_factory(doc)
    wait_online(col)
    gw.kill()
    # The broker notices the dead TCP connection at once (RST) and publishes the Will.
    assert col.wait_for(lambda: col.on_topic(f"{PREFIX}/status")[-1:] == [b"offline"], 15)
    late = Collector(broker.host, broker.port, [f"{PREFIX}/status"])
    assert late.wait_for(lambda: late.messages[-1:] == [(f"{PREFIX}/status", b"offline", True)], 5)  # retained


def test_sigterm_drains_what_was_taken_and_leaves_the_rest_with_the_broker(
    broker: LocalBroker, gateway_factory
) -> None:  # type: ignore[no-untyped-def]
    doc = base_config(broker.port, pipelines=[passthrough("p", ["in/#"])])
    col = Collector(broker.host, broker.port, [f"{PREFIX}/#"])
    gw = gateway_factory(doc)
    wait_online(col)
    publish_all(broker.host, broker.port, [("in/x", reading(i)) for i in range(500)])
    assert gw.terminate() == 0  # stop while input is still arriving
    assert col.wait_for(lambda: col.on_topic(f"{PREFIX}/status")[-1:] == [b"offline"], 5)
    final = col.json_on("/metrics")[-1]["pipelines"]["p"]
    first = [json.loads(p)["data"]["values"]["x"] for p in col.on_topic("/p/event")]
    # Exact accounting: every message taken was processed and published before exit.
    assert final["in"] == final["processed"] == len(first)
    assert final["rejected"] == final["dropped"] == final["errors"] == 0
    # What was not taken was never acknowledged: the broker hands it to the next run.
    gw2 = gateway_factory(doc)
    col.wait_count("/p/event", 500, 20)
    values = [json.loads(p)["data"]["values"]["x"] for p in col.on_topic("/p/event")]
    assert sorted(set(values)) == list(range(500)), f"missing {sorted(set(range(500)) - set(values))[:10]}"
    assert gw2.terminate() == 0


def test_persistent_session_delivers_what_was_published_while_down(broker: LocalBroker, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    doc = base_config(broker.port, pipelines=[passthrough("p", ["in/#"])])
    col = Collector(broker.host, broker.port, [f"{PREFIX}/p/event", f"{PREFIX}/status"])
    gw = gateway_factory(doc)
    # "online" is published after the subscription is sent on the same connection, so the broker has
    # it in place; the "connected" log line comes before the subscription is sent.
    wait_online(col)
    publish_all(broker.host, broker.port, [("in/x", reading(i)) for i in range(10)])
    assert len(col.wait_count("/p/event", 10)) == 10
    assert gw.terminate() == 0
    publish_all(broker.host, broker.port, [("in/x", reading(i)) for i in range(10, 60)])  # gateway down
    gw2 = gateway_factory(doc)
    got = col.wait_count("/p/event", 60, 20)
    assert sorted(json.loads(p)["data"]["values"]["x"] for p in got) == list(range(60))
    assert gw2.terminate() == 0


def test_shared_subscription_splits_one_stream_between_two_gateways(broker: LocalBroker, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    col = Collector(broker.host, broker.port, ["edge/+/p/event", "edge/+/status"])
    for gid in ("gw-a", "gw-b"):
        doc = base_config(broker.port, gateway_id=gid, pipelines=[passthrough("p", ["in/#"])])
        doc["mqtt"]["shared_group"] = "fleet"
        gateway_factory(doc, name=gid)
    for gid in ("gw-a", "gw-b"):
        wait_online(col, f"edge/{gid}")
    time.sleep(0.5)  # both subscriptions in place
    publish_all(broker.host, broker.port, [("in/x", reading(i)) for i in range(200)])
    assert col.wait_for(lambda: len(col.matching(lambda t, _p: t.endswith("/p/event"))) >= 200, 20)
    a = len(col.on_topic("edge/gw-a/p/event"))
    b = len(col.on_topic("edge/gw-b/p/event"))
    values = sorted(
        json.loads(p)["data"]["values"]["x"] for _t, p, _r in col.matching(lambda t, _p: t.endswith("/p/event"))
    )
    assert a + b == 200 and values == list(range(200))  # each message processed exactly once
    assert a > 0 and b > 0


def test_mqtt_311_is_selectable(broker: LocalBroker, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    doc = base_config(broker.port, pipelines=[passthrough("p", ["in/#"])])
    doc["mqtt"]["protocol"] = "3.1.1"
    col = Collector(broker.host, broker.port, [f"{PREFIX}/#"])
    gateway_factory(doc)
    wait_online(col)
    publish_all(broker.host, broker.port, [("in/x", reading(1))])
    assert col.wait_count("/p/event", 1)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make test certificates")
def test_mutual_tls_with_client_certificates(tmp_path: Path, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    pki = make_test_pki(tmp_path / "pki")
    tls_broker = LocalBroker(
        workdir=tmp_path / "tlsbroker",
        tls={
            "cafile": str(pki["ca_crt"]),
            "certfile": str(pki["server_crt"]),
            "keyfile": str(pki["server_key"]),
            "require_certificate": "1",
        },
    ).start()
    try:
        doc = base_config(tls_broker.port, pipelines=[passthrough("p", ["in/#"])])
        doc["mqtt"]["tls"] = {
            "ca_file": str(pki["ca_crt"]),
            "cert_file": str(pki["client_crt"]),
            "key_file": str(pki["client_key"]),
        }
        gw = gateway_factory(doc)
        # A client with the certificate sees the gateway's output; the broker refuses anyone without one.
        import ssl

        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        got: list[bytes] = []
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        c.tls_set(
            ca_certs=str(pki["ca_crt"]),
            certfile=str(pki["client_crt"]),
            keyfile=str(pki["client_key"]),
            cert_reqs=ssl.CERT_REQUIRED,
        )
        c.on_message = lambda _c, _u, m: got.append(m.payload)
        c.on_connect = lambda cl, *a: cl.subscribe(f"{PREFIX}/#", 1)
        c.connect("127.0.0.1", tls_broker.port)
        c.loop_start()
        deadline = time.monotonic() + 20
        while b"online" not in got and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b"online" in got, gw.output()
        c.publish("in/x", reading(5), qos=1).wait_for_publish(5)
        while not any(b'"x":5' in p for p in got) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(b'"x":5' in p for p in got)
        c.disconnect()
        c.loop_stop()
        no_cert = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        no_cert.tls_set(ca_certs=str(pki["ca_crt"]), cert_reqs=ssl.CERT_REQUIRED)
        accepted: list[bool] = []
        no_cert.on_connect = lambda _c, _u, _f, rc, _p: accepted.append(not rc.is_failure)
        try:
            no_cert.connect("127.0.0.1", tls_broker.port)
            no_cert.loop_start()
            time.sleep(2)
            no_cert.loop_stop()
        except (ssl.SSLError, OSError):
            pass  # refused during the handshake
        assert True not in accepted, "a client without a certificate was let in"
    finally:
        tls_broker.stop()


def test_json_logs_are_one_object_per_line_and_never_carry_the_password(
    broker: LocalBroker, gateway_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    doc = base_config(broker.port, pipelines=[passthrough("p", ["in/#"])])
    doc["logging"] = {"format": "json", "level": "DEBUG"}
    doc["mqtt"]["username"] = "gw"
    doc["mqtt"]["password"] = "pa55-secret-word"
    col = Collector(broker.host, broker.port, [f"{PREFIX}/#"])
    gw = gateway_factory(doc)
    wait_online(col)
    publish_all(broker.host, broker.port, [("in/x", b"{broken")])
    col.wait_count("/errors", 1)
    assert gw.terminate() == 0
    lines = [line for line in gw.output().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and len(records) >= len(lines) - 2  # anything else would be a stray print
    assert {"ts", "level", "logger", "message"} <= set(records[0])
    assert any("rejected a message from in/x" in r["message"] for r in records)
    assert "pa55-secret-word" not in gw.output()


def test_reconnects_and_resubscribes_after_the_broker_restarts(tmp_path: Path, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    b = LocalBroker(workdir=tmp_path / "restarting").start()
    try:
        doc = base_config(b.port, pipelines=[passthrough("p", ["in/#"])])
        gw = gateway_factory(doc)
        col = Collector(b.host, b.port, [f"{PREFIX}/p/event"])
        assert col.wait_for(lambda: "connected to" in gw.output(), 20)
        publish_all(b.host, b.port, [("in/x", reading(1))])
        col.wait_count("/p/event", 1)
        col.close()
        b.kill()
        time.sleep(1.5)
        b.start()  # same port, same persistence
        deadline = time.monotonic() + 20
        while gw.output().count("connected to") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gw.output().count("connected to") >= 2, "no reconnect within the backoff bound"
        col = Collector(b.host, b.port, [f"{PREFIX}/p/event"])
        publish_all(b.host, b.port, [("in/x", reading(2))])
        got = col.wait_count("/p/event", 1)
        assert any(json.loads(p)["data"]["values"]["x"] == 2 for p in got)
    finally:
        b.stop()


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd (package mosquitto) is needed")
def test_username_and_password_file(tmp_path: Path, gateway_factory) -> None:  # type: ignore[no-untyped-def]
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "gw", "right-horse"], check=True, capture_output=True)
    b = LocalBroker(workdir=tmp_path / "auth", password_file=pwfile)
    b.start()
    try:
        (tmp_path / "good.pw").write_text("right-horse\n")
        (tmp_path / "bad.pw").write_text("wrong-horse\n")
        good = base_config(b.port, gateway_id="gw-good")
        good["mqtt"].update(username="gw", password_file=str(tmp_path / "good.pw"))
        bad = base_config(b.port, gateway_id="gw-bad")
        bad["mqtt"].update(username="gw", password_file=str(tmp_path / "bad.pw"))
        gw_good = gateway_factory(good, name="good")
        gw_bad = gateway_factory(bad, name="bad")
        deadline = time.monotonic() + 20
        while "connected to" not in gw_good.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "connected to" in gw_good.output()
        time.sleep(1)
        assert "connected to" not in gw_bad.output() and "refused" in gw_bad.output()
        for out in (gw_good.output(), gw_bad.output()):
            assert "horse" not in out
    finally:
        b.stop()
