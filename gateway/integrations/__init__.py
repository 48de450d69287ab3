"""Integrations: the gateway's results in the tools users already run.

* :mod:`~gateway.integrations.homeassistant` — Home Assistant MQTT discovery;
* :mod:`~gateway.integrations.sparkplug` — a Sparkplug B edge node for SCADA hosts (Ignition and others);
* :mod:`~gateway.integrations.prometheus` — an HTTP ``/metrics`` endpoint.

Each is an :class:`Integration`: built from its config section and an :class:`IntegrationContext`, fed by
the gateway with what it publishes anyway (plugin outputs, the metrics document) and told when the
gateway's MQTT link connects. :class:`Integrations` is the set the gateway holds; it isolates failures so
an integration can never break a pipeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paho.mqtt.client import topic_matches_sub

from gateway.messages import Output
from gateway.router import matches

if TYPE_CHECKING:
    from gateway.config import MqttConfig

log = logging.getLogger(__name__)

PublishFn = Callable[[str, bytes, int, bool], object]
"""``publish(topic, payload, qos, retain)`` on the gateway's MQTT link."""


@dataclass(frozen=True, slots=True)
class PipelineDescription:
    """A configured pipeline as integrations see it: its name, plugin and validated plugin options."""

    name: str
    plugin: str
    options: Any = None


@dataclass(frozen=True)
class IntegrationContext:
    """What the gateway hands every integration."""

    gateway_id: str
    topic_prefix: str
    publish: PublishFn
    pipelines: Sequence[PipelineDescription] = ()
    version: str = "0"
    mqtt: MqttConfig = field(default_factory=lambda: _default_mqtt())
    client_id: str = "edge-gateway"
    base_dir: Path = field(default_factory=Path.cwd)
    data_dir: Path | None = None

    @classmethod
    def for_gateway(cls, cfg: Any, publish: PublishFn) -> IntegrationContext:
        """The context for a loaded :class:`~gateway.config.GatewayConfig` publishing through ``publish``."""
        from gateway import __version__

        pipelines = []
        for p in cfg.pipelines:
            if not p.enabled:
                continue
            try:
                options = cfg.plugin_options(p.name)
            except KeyError:
                options = p.options
            pipelines.append(PipelineDescription(p.name, p.plugin, options))
        return cls(
            gateway_id=cfg.gateway_id,
            topic_prefix=cfg.topic_prefix,
            publish=publish,
            pipelines=tuple(pipelines),
            version=__version__,
            mqtt=cfg.mqtt,
            client_id=cfg.client_id,
            base_dir=cfg.base_dir,
            data_dir=cfg.resolve(cfg.data_dir),
        )


def _default_mqtt() -> MqttConfig:
    from gateway.config import MqttConfig  # here, not at import: the gateway's config mounts our sections

    return MqttConfig.model_validate({})


class Integration:
    """Base of integrations; every hook is optional and must return quickly (it runs on gateway threads)."""

    name: str = "integration"

    def subscriptions(self) -> list[str]:
        """Topic filters the gateway's link must subscribe to (unshared) and route to :meth:`on_message`."""
        return []

    def on_message(self, topic: str, payload: bytes) -> None:
        """A message on one of :meth:`subscriptions`."""

    def start(self) -> None:
        """Start background work (servers, connections of its own)."""

    def stop(self) -> None:
        """Stop background work; called once at shutdown, before the link goes offline."""

    def on_connect(self) -> None:
        """The gateway's link (re)connected and published ``online``."""

    def on_outputs(self, pipeline: str, plugin: str, outputs: Sequence[Output]) -> None:
        """Outputs a pipeline just produced (called on the pipeline's worker thread)."""

    def on_metrics(self, doc: Mapping[str, Any]) -> None:
        """The metrics document, as published on ``<prefix>/metrics``."""


class Integrations(Integration):
    """The integrations a gateway runs, called as one; an exception in one is logged, never raised."""

    name = "integrations"

    def __init__(self, items: Iterable[Integration] = ()) -> None:
        self.items = list(items)
        self._filters: tuple[str, ...] | None = None

    @classmethod
    def from_config(
        cls,
        context: IntegrationContext,
        *,
        homeassistant: Any = None,
        sparkplug: Any = None,
        prometheus: Any = None,
    ) -> Integrations:
        """Build the enabled integrations from their config sections (``None`` or ``enabled: false`` = off)."""
        items: list[Integration] = []
        if homeassistant is not None and homeassistant.enabled:
            from gateway.integrations.homeassistant import HomeAssistantDiscovery

            items.append(HomeAssistantDiscovery(homeassistant, context))
        if sparkplug is not None and sparkplug.enabled:
            from gateway.integrations.sparkplug import SparkplugEdgeNode

            items.append(SparkplugEdgeNode(sparkplug, context))
        if prometheus is not None and prometheus.enabled:
            from gateway.integrations.prometheus import PrometheusEndpoint

            items.append(PrometheusEndpoint(prometheus, context))
        return cls(items)

    @classmethod
    def for_gateway(cls, cfg: Any, publish: PublishFn) -> Integrations:
        """The integrations enabled in a gateway config's ``homeassistant``/``sparkplug``/``prometheus`` sections."""
        return cls.from_config(
            IntegrationContext.for_gateway(cfg, publish),
            homeassistant=getattr(cfg, "homeassistant", None),
            sparkplug=getattr(cfg, "sparkplug", None),
            prometheus=getattr(cfg, "prometheus", None),
        )

    def __bool__(self) -> bool:
        return bool(self.items)

    def _each(self, what: str, call: Callable[[Integration], None]) -> None:
        for item in self.items:
            try:
                call(item)
            except Exception:
                log.exception("integration %s: %s failed", item.name, what)

    def subscriptions(self) -> list[str]:
        return [f for item in self.items for f in item.subscriptions()]

    def handles(self, topic: str) -> bool:
        """Whether a received topic belongs to an integration (and not to the pipelines' router).

        Called for every received message: the filters are computed once.
        """
        if not self.items:
            return False
        if self._filters is None:
            self._filters = tuple(self.subscriptions())
        return any(matches(f, topic) for f in self._filters)

    def on_message(self, topic: str, payload: bytes) -> None:
        for item in self.items:
            if any(topic_matches_sub(f, topic) for f in item.subscriptions()):
                try:
                    item.on_message(topic, payload)
                except Exception:
                    log.exception("integration %s: message on %s failed", item.name, topic)

    def start(self) -> None:
        self._each("start", lambda i: i.start())

    def stop(self) -> None:
        self._each("stop", lambda i: i.stop())

    def on_connect(self) -> None:
        self._each("on_connect", lambda i: i.on_connect())

    def on_outputs(self, pipeline: str, plugin: str, outputs: Sequence[Output]) -> None:
        self._each("on_outputs", lambda i: i.on_outputs(pipeline, plugin, outputs))

    def on_metrics(self, doc: Mapping[str, Any]) -> None:
        self._each("on_metrics", lambda i: i.on_metrics(doc))


__all__ = ["Integration", "IntegrationContext", "Integrations", "PipelineDescription", "PublishFn"]
