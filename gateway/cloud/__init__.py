"""Cloud sync: the outbox's ``cloud`` destination, sent over a second MQTT connection or HTTPS.

:class:`CloudSync` wires a :class:`~gateway.store.delivery.Deliverer` for the ``cloud`` destination to the
link the configuration asks for, with the cloud topic template and the rate limit.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.cloud.https_link import HttpsLink
from gateway.cloud.mqtt_link import MqttCloudLink
from gateway.store.config import CloudConfig
from gateway.store.delivery import Deliverer
from gateway.store.outbox import Outbox
from gateway.store.records import OutboxRecord

log = logging.getLogger(__name__)

CLOUD = "cloud"

__all__ = ["CLOUD", "CloudSync", "HttpsLink", "MqttCloudLink"]


class CloudSync:
    """Forwards the outbox's ``cloud`` records to the configured cloud link, oldest first."""

    def __init__(self, outbox: Outbox, config: CloudConfig, gateway_id: str, *, ack_timeout_s: float = 30.0) -> None:
        if not config.enabled:
            raise ValueError("cloud sync is not enabled in the configuration")
        self.config = config
        self.gateway_id = gateway_id
        self.link: MqttCloudLink | HttpsLink
        if config.mqtt is not None:
            client_id = config.mqtt.client_id or f"edge-gateway-{gateway_id}-cloud"
            self.link = MqttCloudLink(config.mqtt, client_id, max_in_flight=config.max_in_flight)
        elif config.https is not None:
            self.link = HttpsLink(config.https)
        else:  # excluded by the config's validation
            raise ValueError("no cloud destination configured")
        self.deliverer = Deliverer(
            outbox,
            CLOUD,
            self.link,
            topic_for=self.topic_for,
            qos=config.qos,
            max_in_flight=config.max_in_flight,
            batch_size=config.max_in_flight,
            rate_limit_per_s=config.rate_limit_per_s,
            ack_timeout_s=ack_timeout_s,
        )

    def wants(self, kind: str) -> bool:
        """Whether records of ``kind`` are sent to the cloud."""
        return kind in self.config.kinds

    def topic_for(self, record: OutboxRecord) -> str:
        """The cloud topic of a record."""
        return self.config.topic_for(self.gateway_id, record.pipeline, record.kind)

    def start(self) -> CloudSync:
        self.link.start()
        self.deliverer.start()
        return self

    def stop(self) -> None:
        self.deliverer.stop()
        self.link.stop()

    def stats(self) -> dict[str, Any]:
        s = self.deliverer.stats()
        out: dict[str, Any] = {
            "connected": s.connected,
            "published": s.published,
            "acknowledged": s.acknowledged,
            "in_flight": s.in_flight,
            "resent_after_timeout": s.resent_after_timeout,
            "unsendable": s.unsendable,
        }
        if isinstance(self.link, HttpsLink):
            out["refused_by_endpoint"] = self.link.refused_by_endpoint
        return out
