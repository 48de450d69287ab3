"""The integrations inside a real gateway process: discovery, Prometheus and Sparkplug from one YAML file.

Skipped until the gateway's config has the ``homeassistant``, ``sparkplug`` and ``prometheus`` sections.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from gateway.broker import LocalBroker, free_port
from gateway.config import GatewayConfig
from gateway.integrations.sparkplug import metric_value
from gateway.integrations.sparkplug_proto import Payload
from tests.mqtt_helpers import Collector, GatewayProcess, base_config, publish_all, write_config
from tests.test_homeassistant_schema import problems

pytestmark = pytest.mark.skipif(
    not {"homeassistant", "sparkplug", "prometheus"} <= set(GatewayConfig.model_fields),
    reason="the gateway config does not mount the integration sections yet",
)


def test_gateway_runs_the_integrations_from_its_config(broker: LocalBroker, tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client", reason="the prometheus extra is not installed")
    prom_port = free_port()
    doc = base_config(
        broker.port,
        gateway_id="gw-int",
        pipelines=[{"name": "pumps", "plugin": "passthrough", "inputs": ["sensors/#"]}],
        homeassistant={"enabled": True},
        sparkplug={"enabled": True, "group_id": "plant", "publish_interval_s": 0.2},
        prometheus={"enabled": True, "host": "127.0.0.1", "port": prom_port},
    )
    config = write_config(tmp_path / "gateway.yaml", doc)
    ha = Collector(broker.host, broker.port, ["homeassistant/#"])
    sp = Collector(broker.host, broker.port, ["spBv1.0/plant/#"])
    gw = GatewayProcess(config).start()
    try:
        assert ha.wait_for(lambda: any("/pumps_processed/" in t for t, _p, _r in ha.messages), 30), gw.output()
        publish_all(
            broker.host, broker.port, [("sensors/m1", json.dumps({"source": "m1", "values": {"temp": 21.5}}).encode())]
        )
        target = "homeassistant/sensor/gw-int/pumps_m1_values_temp/config"
        assert ha.wait_for(lambda: any(t == target for t, _p, _r in ha.messages), 15), gw.output()
        configs = {t: json.loads(p) for t, p, _r in ha.messages if p}
        assert [p for t, c in configs.items() for p in problems(t, c)] == []
        assert configs[target]["state_topic"] == "edge/gw-int/pumps/state/m1"

        # Home Assistant restarts: configs come again
        n = len(ha.messages)
        publish_all(broker.host, broker.port, [("homeassistant/status", b"online")])
        assert ha.wait_for(lambda: len(ha.messages) >= n + len(configs), 15)

        # Sparkplug: birth certificates and the reading as DDATA of device "pumps"
        def ddata_value() -> object:
            for t, p, _r in sp.messages:
                if t.endswith("/DDATA/gw-int/pumps") or t.endswith("/DBIRTH/gw-int/pumps"):
                    for m in Payload.FromString(p).metrics:
                        if m.name == "State/m1/values/temp":
                            return metric_value(m)
            return None

        assert sp.wait_for(lambda: ddata_value() == 21.5, 15), [t for t, _p, _r in sp.messages]
        assert any(t.endswith("/NBIRTH/gw-int") for t, _p, _r in sp.messages)

        # Prometheus: the processed counter once the metrics document went out
        deadline = time.monotonic() + 15
        text = ""
        while time.monotonic() < deadline and 'stage="processed"} 1.0' not in text:
            time.sleep(0.3)
            with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        assert (
            'edge_gateway_pipeline_messages_total{gateway="gw-int",pipeline="pumps",plugin="passthrough",stage="processed"} 1.0'
            in text
        )

        assert gw.terminate() == 0
        assert sp.wait_for(lambda: any(t.endswith("/NDEATH/gw-int") for t, _p, _r in sp.messages), 10)
    finally:
        gw.stop()
        ha.close()
        sp.close()
