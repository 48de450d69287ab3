"""Sparkplug B edge node against a real Mosquitto, its payloads read back by protoc as an independent decoder."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.broker import LocalBroker
from gateway.config import MqttConfig
from gateway.integrations import IntegrationContext, PipelineDescription
from gateway.integrations.config import SparkplugConfig
from gateway.integrations.sparkplug import REBIRTH, SparkplugEdgeNode, metric_value
from gateway.integrations.sparkplug_proto import FILE_DESCRIPTOR, DataType, Payload
from gateway.messages import Event, State
from tests.mqtt_helpers import REPO, Collector, publish_all

PROTO = REPO / "gateway" / "integrations" / "sparkplug_b.proto"
PIPELINES = (PipelineDescription("traffic", "traffic_counting"), PipelineDescription("anomalies", "anomaly_detection"))
NS = "spBv1.0/plant"


def protoc() -> str:
    exe = shutil.which("protoc")
    if exe is None:
        pytest.skip("protoc is not installed (apt-get install protobuf-compiler); it is the independent decoder")
    return exe


def protoc_decode(payload: bytes) -> str:
    """The payload as protoc's text format, decoded with the specification's .proto."""
    out = subprocess.run(
        [protoc(), f"--proto_path={PROTO.parent}", "--decode=org.eclipse.tahu.protobuf.Payload", PROTO.name],
        input=payload,
        capture_output=True,
        check=True,
    )
    return out.stdout.decode()


def protoc_raw(payload: bytes) -> str:
    """The payload decoded without any schema (field numbers only)."""
    return subprocess.run([protoc(), "--decode_raw"], input=payload, capture_output=True, check=True).stdout.decode()


def seq_of(text: str) -> int | None:
    m = re.search(r"^seq: (\d+)$", text, re.M)
    return None if m is None else int(m.group(1))


def bdseq_of(text: str) -> int:
    m = re.search(r'name: "bdSeq"\n(?:.*\n)*?\s*long_value: (\d+)', text)
    assert m is not None, text
    return int(m.group(1))


def kinds(collector: Collector) -> list[tuple[str, bytes]]:
    return [
        (t.split("/")[2] + ("/" + t.split("/")[4] if t.count("/") == 4 else ""), p) for t, p, _r in collector.messages
    ]


def make_node(broker: LocalBroker, tmp_path: Path, interval: float = 0.0) -> SparkplugEdgeNode:
    ctx = IntegrationContext(
        "gw-sp", "edge/gw-sp", lambda *a: None, PIPELINES, version="1.2.3",
        mqtt=MqttConfig(host=broker.host, port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5),
        client_id="gw-sp", data_dir=tmp_path / "data",
    )  # fmt: skip
    return SparkplugEdgeNode(SparkplugConfig(enabled=True, group_id="plant", publish_interval_s=interval), ctx)


def test_embedded_descriptor_is_the_specification_proto(tmp_path: Path) -> None:
    from google.protobuf import descriptor_pb2

    out = tmp_path / "spb.desc"
    subprocess.run([protoc(), f"--proto_path={PROTO.parent}", f"--descriptor_set_out={out}", PROTO.name], check=True)
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    assert files[0].SerializeToString() == FILE_DESCRIPTOR


def test_birth_data_and_clean_death_sequence(broker: LocalBroker, tmp_path: Path) -> None:
    sub = Collector(broker.host, broker.port, [f"{NS}/#"])
    node = make_node(broker, tmp_path)
    node.start()
    assert node.wait_born(10)
    node.on_outputs("anomalies", "anomaly_detection", [State({"score": 0.5, "anomaly": False, "ts": 1.0}, key="temp")])
    node.on_outputs("anomalies", "anomaly_detection", [State({"score": 2.5, "anomaly": True, "ts": 2.0}, key="temp")])
    node.on_outputs("traffic", "traffic_counting", [Event("line_crossing", {"line": "a"})])
    node.on_metrics({"process": {"rss_mb": 50.0, "cpu_percent": 3.0}, "mqtt": {"connected": True},
                     "pipelines": {"traffic": {"in": 10, "processed": 9, "latency_ms": {"p50": 1.0, "p95": None}}}})  # fmt: skip
    node.stop()
    assert sub.wait_for(lambda: any("NDEATH" in t for t, _p, _r in sub.messages), 10)
    time.sleep(0.2)
    sequence = kinds(sub)
    names = [k for k, _ in sequence]
    assert names[:3] == ["NBIRTH", "DBIRTH/traffic", "DBIRTH/anomalies"]
    assert names[-1] == "NDEATH"
    decoded = [protoc_decode(p) for _k, p in sequence]
    # seq: NBIRTH 0, then +1 for every message but the death certificate, which has none
    assert [seq_of(t) for t in decoded[:-1]] == list(range(len(decoded) - 1))
    assert seq_of(decoded[-1]) is None
    # bdSeq of the birth and of the death certificate match
    assert bdseq_of(decoded[0]) == bdseq_of(decoded[-1]) == node.bdseq
    assert f'name: "{REBIRTH}"' in decoded[0] and "boolean_value: false" in decoded[0]
    # the new series was re-born (DDEATH then DBIRTH with its metrics), its change went out as DDATA
    assert "DDEATH/anomalies" in names
    rebirth = names.index("DBIRTH/anomalies", names.index("DDEATH/anomalies"))
    assert 'name: "State/temp/score"' in decoded[rebirth]
    ddata = [d for (k, _p), d in zip(sequence, decoded) if k == "DDATA/anomalies"]
    assert any('name: "State/temp/score"' in d and "double_value: 2.5" in d for d in ddata)
    assert any(k == "DDATA/traffic" for k in names) and any(k == "NDATA" for k in names)
    # the raw decoder sees the same seq field (number 3) on a data message
    raw = protoc_raw(sequence[names.index("NDATA")][1])
    assert re.search(r"^3: \d+$", raw, re.M)
    sub.close()


def test_seq_wraps_after_255(broker: LocalBroker, tmp_path: Path) -> None:
    sub = Collector(broker.host, broker.port, [f"{NS}/#"])
    node = make_node(broker, tmp_path)
    node.start()
    assert node.wait_born(10)
    for i in range(300):
        node.on_outputs("traffic", "traffic_counting", [State({"count": i})])
    # NBIRTH, 2 DBIRTH, then DDEATH + DBIRTH for the new metric and 299 DDATA
    assert sub.wait_for(lambda: len(sub.messages) >= 3 + 2 + 299, 15)
    seqs = [Payload.FromString(p).seq for _t, p, _r in sub.messages]
    assert seqs[:3] == [0, 1, 2]
    assert all(b == (a + 1) % 256 for a, b in zip(seqs, seqs[1:]))
    assert seqs.index(0, 1) == 256  # after 255 comes 0
    # decoded independently, the first wrapped message says seq 0
    assert seq_of(protoc_decode(sub.messages[256][1])) == 0  # proto2 optional: a set 0 is encoded
    node.stop()
    sub.close()


def test_rebirth_on_node_command(broker: LocalBroker, tmp_path: Path) -> None:
    sub = Collector(broker.host, broker.port, [f"{NS}/#"])
    node = make_node(broker, tmp_path)
    node.start()
    assert node.wait_born(10)
    node.on_outputs("traffic", "traffic_counting", [State({"count": 1})])
    cmd = Payload()
    cmd.timestamp = int(time.time() * 1000)
    m = cmd.metrics.add()
    m.name, m.datatype, m.boolean_value = REBIRTH, DataType.Boolean, True
    publish_all(broker.host, broker.port, [(f"{NS}/NCMD/gw-sp", cmd.SerializeToString())], qos=0)
    assert sub.wait_for(lambda: sum(1 for t, _p, _r in sub.messages if "/NBIRTH/" in t) == 2, 10)
    time.sleep(0.3)
    names = [k for k, _ in kinds(sub) if k != "NCMD"]
    second = [i for i, k in enumerate(names) if k == "NBIRTH"][1]
    assert names[second : second + 3] == ["NBIRTH", "DBIRTH/traffic", "DBIRTH/anomalies"]
    births = [protoc_decode(p) for t, p, _r in sub.messages if "/NBIRTH/" in t]
    assert seq_of(births[1]) == 0 and bdseq_of(births[1]) == bdseq_of(births[0])  # same session, same bdSeq
    dbirth = next(
        Payload.FromString(p) for t, p, _r in sub.messages[second + 1 :] if t.endswith("DBIRTH/gw-sp/traffic")
    )
    assert {mm.name: metric_value(mm) for mm in dbirth.metrics}["State/count"] == 1
    node.stop()
    sub.close()


NODE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gateway.config import MqttConfig
    from gateway.integrations import IntegrationContext, PipelineDescription
    from gateway.integrations.config import SparkplugConfig
    from gateway.integrations.sparkplug import SparkplugEdgeNode
    ctx = IntegrationContext("gw-sp", "edge/gw-sp", lambda *a: None, (PipelineDescription("traffic", "traffic_counting"),),
        mqtt=MqttConfig(host="127.0.0.1", port=int(sys.argv[1]), reconnect_min_s=0.1, reconnect_max_s=0.5,
                        keepalive_s=5), client_id="gw-sp", data_dir=Path(sys.argv[2]))
    node = SparkplugEdgeNode(SparkplugConfig(enabled=True, group_id="plant"), ctx)
    node.start()
    while True:
        time.sleep(1)
    """
)


def test_death_certificate_is_the_will_and_bdseq_follows_each_connection(broker: LocalBroker, tmp_path: Path) -> None:
    sub = Collector(broker.host, broker.port, [f"{NS}/NBIRTH/#", f"{NS}/NDEATH/#"])
    proc = subprocess.Popen([sys.executable, "-c", NODE_SCRIPT, str(broker.port), str(tmp_path / "data")], cwd=REPO)
    try:
        assert sub.wait_for(lambda: len(sub.messages) >= 1, 20), "no NBIRTH"
        first = bdseq_of(protoc_decode(sub.messages[0][1]))
        # the broker goes away and comes back: a new session, so a new NBIRTH with the next bdSeq
        sub.close()
        broker.stop()
        broker.start()
        sub = Collector(broker.host, broker.port, [f"{NS}/NBIRTH/#", f"{NS}/NDEATH/#"])
        assert sub.wait_for(lambda: any("NBIRTH" in t for t, _p, _r in sub.messages), 20), "no second NBIRTH"
        second = bdseq_of(protoc_decode(sub.messages[-1][1]))
        assert second == (first + 1) % 256
        # the process dies without a word: the broker publishes the Will, which carries the same bdSeq
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert sub.wait_for(lambda: any("NDEATH" in t for t, _p, _r in sub.messages), 20), "no NDEATH (Will)"
        death = next(p for t, p, _r in sub.messages if "NDEATH" in t)
        assert bdseq_of(protoc_decode(death)) == second
        assert seq_of(protoc_decode(death)) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        sub.close()


def test_bdseq_is_kept_across_restarts(broker: LocalBroker, tmp_path: Path) -> None:
    first = make_node(broker, tmp_path)
    second = make_node(broker, tmp_path)
    assert second.bdseq == (first.bdseq + 1) % 256
    values: list[Any] = [Payload.FromString(second.death_payload()).metrics[0]]
    assert metric_value(values[0]) == second.bdseq and values[0].datatype == DataType.UInt64
