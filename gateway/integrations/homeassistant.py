"""Home Assistant MQTT discovery: each pipeline's results appear as entities of one device per gateway.

Entities come from three places:

* the **state a pipeline publishes** — on the first State of each key, its numeric and boolean fields
  become sensors and binary sensors (a new anomaly series or a new vehicle class appears by itself),
  with units and classes chosen from the field names (``health`` in %, ``alarm`` as a problem, counts as
  ``total_increasing``...);
* a plugin that knows better can declare entities up front with a ``discovery_entities(options)``
  classmethod returning :class:`EntitySpec` objects (announced at connect, before any state);
* the **metrics topic** — diagnostic sensors per pipeline (processed, errors, latency, backlog) and for the
  process (memory, CPU).

Every config is retained under ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` with
``<prefix>/status`` as availability. What was announced is kept in a retained record on
``<prefix>/discovery``; at the next start, entities of pipelines no longer configured are removed (an
empty retained config). Configs are re-published when Home Assistant announces ``online``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.integrations import Integration, IntegrationContext, PipelineDescription
from gateway.integrations.config import HomeAssistantConfig
from gateway.messages import Event, Output, State
from gateway.publisher import topic_level

log = logging.getLogger(__name__)

Component = Literal["sensor", "binary_sensor", "event"]
RECORD_VERSION = 1
ORIGIN_NAME = "edge-ai-gateway"


@dataclass(frozen=True, slots=True)
class EntitySpec:
    """One entity read from a pipeline's State: ``path`` into ``data`` of the State with ``key``."""

    path: tuple[str, ...]
    key: str | None = None
    name: str | None = None
    component: Component = "sensor"
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    icon: str | None = None


@dataclass(frozen=True, slots=True)
class PluginProfile:
    """How deep to look into a plugin's State data for entities, and the event types it emits."""

    max_depth: int = 2
    event_types: tuple[str, ...] = ()
    problem_fields: frozenset[str] = frozenset()


# Built-in knowledge of the bundled plugins. Unknown plugins get the default profile.
PROFILES: dict[str, PluginProfile] = {
    "traffic_counting": PluginProfile(max_depth=4),
    "predictive_maintenance": PluginProfile(max_depth=2, event_types=("alarm_raised", "alarm_cleared")),
    "anomaly_detection": PluginProfile(
        max_depth=2, event_types=("anomaly_start", "anomaly_end"), problem_fields=frozenset({"active"})
    ),
}

_IGNORED = frozenset({"ts", "timestamp", "time", "start", "end", "seq", "id", "v", "since", "source", "updated"})
_PROBLEM = frozenset({"alarm", "anomaly", "is_anomaly", "fault", "alert", "in_alarm", "anomalous"})
_HEALTH = frozenset({"health", "health_index", "health_pct", "health_percent"})
_SCORE = frozenset({"score", "anomaly_score"})
_COUNT_LEVELS = frozenset({"counts", "count", "crossings", "totals", "total", "lines"})
_OCCUPANCY = frozenset({"occupancy", "occupied", "zones", "zone"})
_TEXT = frozenset({"status", "state", "level", "severity"})
_RUL_UNITS = {"h": "h", "hours": "h", "s": "s", "seconds": "s", "d": "d", "days": "d", "min": "min"}


def slug(*parts: str) -> str:
    """A Home Assistant object id: lower-case letters, digits and ``_``."""
    text = "_".join(p for p in parts if p)
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", text.lower())).strip("_") or "_"


def describe_field(
    path: tuple[str, ...], value: Any, key: str | None = None, problems: frozenset[str] = frozenset()
) -> EntitySpec | None:
    """The entity for one State field, or None when the field is not worth one (timestamps, text, lists).

    ``problems`` names further boolean fields that mean "something is wrong" for this plugin.
    """
    leaf = path[-1].lower()
    if leaf in _IGNORED:
        return None
    lowered = {p.lower() for p in path}
    if isinstance(value, bool):
        problem = leaf in _PROBLEM or (len(path) == 1 and leaf in problems)
        return EntitySpec(path, key, component="binary_sensor", device_class="problem" if problem else None)
    if isinstance(value, (int, float)):
        if leaf in _HEALTH:
            return EntitySpec(path, key, unit="%", state_class="measurement", icon="mdi:heart-pulse")
        if leaf.startswith("rul"):
            unit = _RUL_UNITS.get(leaf[3:].lstrip("_"))
            return EntitySpec(
                path,
                key,
                unit=unit,
                device_class="duration" if unit else None,
                state_class="measurement",
                icon="mdi:timer-sand",
            )
        if leaf in _SCORE:
            return EntitySpec(path, key, state_class="measurement", icon="mdi:chart-bell-curve")
        if leaf in _PROBLEM:  # an alarm level given as 0/1
            return EntitySpec(path, key, component="binary_sensor", device_class="problem")
        if lowered & _OCCUPANCY:
            return EntitySpec(path, key, state_class="measurement", icon="mdi:car-multiple")
        if lowered & _COUNT_LEVELS or leaf in ("in", "out"):
            return EntitySpec(path, key, state_class="total_increasing", icon="mdi:counter")
        return EntitySpec(path, key, state_class="measurement")
    if isinstance(value, str) and leaf in _TEXT and len(path) == 1:
        return EntitySpec(path, key, icon="mdi:information-outline")
    return None


def state_entities(
    data: Mapping[str, Any], key: str | None, max_depth: int, problems: frozenset[str] = frozenset()
) -> list[EntitySpec]:
    """Entities for every field of a State's data down to ``max_depth`` levels."""
    found: list[EntitySpec] = []

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        for k, v in node.items():
            p = (*path, str(k))
            if isinstance(v, Mapping):
                if len(p) < max_depth:
                    walk(v, p)
            else:
                spec = describe_field(p, v, key, problems)
                if spec is not None:
                    found.append(spec)

    walk(data, ())
    return found


def declared_entities(plugin_cls: Any, options: Any) -> tuple[list[EntitySpec], tuple[str, ...]]:
    """What a plugin class declares: ``discovery_entities(options)`` and an ``event_types`` tuple, both optional."""
    hook = getattr(plugin_cls, "discovery_entities", None)
    specs = [s for s in hook(options) if isinstance(s, EntitySpec)] if callable(hook) else []
    types = getattr(plugin_cls, "event_types", ())
    return specs, tuple(t for t in types if isinstance(t, str)) if isinstance(types, (tuple, list)) else ()


def _index(path: Sequence[str]) -> str:
    return "".join(f"[{json.dumps(p)}]" for p in path)


@dataclass
class Announced:
    """A discovery config this gateway published: its topic, payload and owning pipeline."""

    topic: str
    payload: dict[str, Any]
    pipeline: str | None
    plugin: str | None
    runtime: bool = False
    event_types: list[str] = field(default_factory=list)


class HomeAssistantDiscovery(Integration):
    """Publishes and maintains Home Assistant discovery configs for a gateway's pipelines."""

    name = "homeassistant"

    def __init__(self, cfg: HomeAssistantConfig, context: IntegrationContext) -> None:
        self.cfg = cfg
        self.ctx = context
        self.node_id = cfg.node_id or re.sub(r"[^A-Za-z0-9_-]", "_", context.gateway_id)
        self.record_topic = f"{context.topic_prefix}/discovery"
        self.pipelines: dict[str, PipelineDescription] = {p.name: p for p in context.pipelines}
        self._lock = threading.RLock()
        self._announced: dict[str, Announced] = {}
        self._adopted: dict[str, tuple[str | None, str | None]] = {}
        self._per_pipeline: dict[str, int] = {}
        self._seen_states: set[tuple[str, str | None, tuple[Any, ...]]] = set()
        self._record_synced = False
        self._record_timer: threading.Timer | None = None
        self.record_wait_s = 3.0
        self.removed: list[str] = []
        self.skipped: dict[str, int] = {}
        self._build_static()

    # -- payloads ---------------------------------------------------------------------------------------
    @property
    def device(self) -> dict[str, Any]:
        return {
            "identifiers": [f"edge_gateway_{self.node_id}"],
            "name": self.cfg.device_name or self.ctx.gateway_id,
            "manufacturer": "Edge AI Gateway",
            "model": "edge-ai-gateway",
            "sw_version": self.ctx.version,
        }

    def _base(self, object_id: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"{self.node_id}_{object_id}",
            "availability": [
                {
                    "topic": f"{self.ctx.topic_prefix}/status",
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ],
            "device": self.device,
            "origin": {"name": ORIGIN_NAME, "sw_version": self.ctx.version},
        }

    def config_topic(self, component: str, object_id: str) -> str:
        return f"{self.cfg.discovery_prefix}/{component}/{self.node_id}/{object_id}/config"

    def _state_entity(self, pipeline: str, spec: EntitySpec) -> tuple[str, dict[str, Any]]:
        object_id = slug(pipeline, spec.key or "", *spec.path)
        label = spec.name or " ".join([pipeline, *([spec.key] if spec.key else []), *spec.path]).replace("_", " ")
        doc = self._base(object_id, label)
        levels = "state" if spec.key is None else f"state/{topic_level(spec.key)}"
        doc["state_topic"] = f"{self.ctx.topic_prefix}/{pipeline}/{levels}"
        ref = f"value_json.data{_index(spec.path)}"
        if spec.component == "binary_sensor":
            doc["value_template"] = f"{{{{ 'ON' if {ref} else 'OFF' }}}}"
            doc["payload_on"], doc["payload_off"] = "ON", "OFF"
        else:
            doc["value_template"] = f"{{{{ {ref} }}}}"
        for name, value in (
            ("unit_of_measurement", spec.unit),
            ("device_class", spec.device_class),
            ("state_class", spec.state_class),
            ("icon", spec.icon),
        ):
            if value is not None:
                doc[name] = value
        return self.config_topic(spec.component, object_id), doc

    def _metric_entity(
        self,
        object_id: str,
        name: str,
        path: Sequence[str],
        *,
        unit: str | None = None,
        device_class: str | None = None,
        state_class: str = "measurement",
        icon: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        doc = self._base(object_id, name)
        doc["state_topic"] = f"{self.ctx.topic_prefix}/metrics"
        doc["value_template"] = f"{{{{ value_json{_index(path)} }}}}"
        doc["state_class"] = state_class
        doc["entity_category"] = "diagnostic"
        if unit:
            doc["unit_of_measurement"] = unit
        if device_class:
            doc["device_class"] = device_class
        if icon:
            doc["icon"] = icon
        return self.config_topic("sensor", object_id), doc

    def _event_entity(self, pipeline: str, event_types: Sequence[str]) -> tuple[str, dict[str, Any]]:
        object_id = slug(pipeline, "events")
        doc = self._base(object_id, f"{pipeline} events".replace("_", " "))
        doc["state_topic"] = f"{self.ctx.topic_prefix}/{pipeline}/event"
        doc["event_types"] = list(event_types)
        doc["value_template"] = '{{ {"event_type": value_json.type} | tojson }}'
        return self.config_topic("event", object_id), doc

    # -- what to announce -------------------------------------------------------------------------------
    def _profile(self, plugin: str) -> PluginProfile:
        return PROFILES.get(plugin, PluginProfile())

    def _declared(self, p: PipelineDescription) -> tuple[list[EntitySpec], tuple[str, ...]]:
        """Entities and event types the pipeline's plugin class declares, if it has the hooks."""
        try:
            from gateway.plugin import plugin_class

            cls: Any = plugin_class(p.plugin)
        except Exception:
            return [], ()
        try:
            return declared_entities(cls, p.options)
        except Exception:
            log.exception("pipeline %s: discovery_entities of plugin %s failed", p.name, p.plugin)
            return [], ()

    def _add(self, topic: str, doc: dict[str, Any], pipeline: str | None, *, runtime: bool = False) -> bool:
        if topic in self._announced:
            return False
        if pipeline is not None:
            n = self._per_pipeline.get(pipeline, 0)
            if n >= self.cfg.max_entities_per_pipeline:
                self.skipped[pipeline] = self.skipped.get(pipeline, 0) + 1
                if self.skipped[pipeline] == 1:
                    log.warning(
                        "home assistant: pipeline %s reached max_entities_per_pipeline (%d); further entities "
                        "(first: %s) are not announced",
                        pipeline,
                        n,
                        topic,
                    )
                return False
            self._per_pipeline[pipeline] = n + 1
        plugin = self.pipelines[pipeline].plugin if pipeline in self.pipelines else None
        self._announced[topic] = Announced(topic, doc, pipeline, plugin, runtime)
        self._adopted.pop(topic, None)
        return True

    def _build_static(self) -> None:
        for p in self.pipelines.values():
            specs, types = self._declared(p)
            for spec in specs:
                self._add(*self._state_entity(p.name, spec), p.name)
            event_types = tuple(dict.fromkeys((*self._profile(p.plugin).event_types, *types)))
            if event_types:
                topic, doc = self._event_entity(p.name, event_types)
                self._add(topic, doc, p.name)
                self._announced[topic].event_types = list(event_types)
            if self.cfg.diagnostics:
                q = p.name
                for object_id, label, path, kw in (
                    (
                        "processed",
                        "processed",
                        ("processed",),
                        {"state_class": "total_increasing", "icon": "mdi:counter"},
                    ),
                    (
                        "errors",
                        "errors",
                        ("errors",),
                        {"state_class": "total_increasing", "icon": "mdi:alert-circle-outline"},
                    ),
                    ("latency_p95", "latency p95", ("latency_ms", "p95"), {"unit": "ms", "device_class": "duration"}),
                    ("backlog", "backlog", ("queue", "depth"), {"icon": "mdi:tray-full"}),
                ):
                    self._add(
                        *self._metric_entity(
                            slug(q, object_id), f"{q} {label}".replace("_", " "), ("pipelines", q, *path), **kw
                        ),
                        q,
                    )
        if self.cfg.diagnostics:
            self._add(
                *self._metric_entity(
                    "memory", "memory", ("process", "rss_mb"), unit="MiB", device_class="data_size", icon="mdi:memory"
                ),
                None,
            )
            self._add(
                *self._metric_entity("cpu", "CPU", ("process", "cpu_percent"), unit="%", icon="mdi:cpu-64-bit"), None
            )

    # -- publishing -------------------------------------------------------------------------------------
    def _publish_config(self, a: Announced) -> None:
        self.ctx.publish(a.topic, json.dumps(a.payload, separators=(",", ":")).encode(), 1, True)

    def record(self) -> dict[str, Any]:
        """The retained record of announced entities: config topic -> [pipeline, plugin, found at run time]."""
        entries: dict[str, list[Any]] = {t: [a.pipeline, a.plugin, a.runtime] for t, a in self._announced.items()}
        entries.update({t: [p, pl, True] for t, (p, pl) in self._adopted.items()})
        return {"v": RECORD_VERSION, "gateway": self.ctx.gateway_id, "entities": entries}

    def _publish_record(self) -> None:
        self.ctx.publish(self.record_topic, json.dumps(self.record(), separators=(",", ":")).encode(), 1, True)

    def publish_all(self) -> None:
        """(Re)publish every config this gateway knows the payload of."""
        with self._lock:
            items = list(self._announced.values())
        for a in items:
            self._publish_config(a)
        log.info("home assistant: %d discovery config(s) published under %s", len(items), self.cfg.discovery_prefix)

    def entities(self) -> dict[str, dict[str, Any]]:
        """Config topic -> payload of everything announced so far."""
        with self._lock:
            return {t: dict(a.payload) for t, a in self._announced.items()}

    # -- Integration hooks ------------------------------------------------------------------------------
    def subscriptions(self) -> list[str]:
        return [self.cfg.status_topic, self.record_topic]

    def on_connect(self) -> None:
        with self._lock:
            self._record_synced = False
            if self._record_timer is not None:
                self._record_timer.cancel()
            self._record_timer = threading.Timer(self.record_wait_s, self._record_timeout)
            self._record_timer.daemon = True
            self._record_timer.start()
        self.publish_all()

    def stop(self) -> None:
        with self._lock:
            if self._record_timer is not None:
                self._record_timer.cancel()

    def _record_timeout(self) -> None:
        with self._lock:
            if self._record_synced:
                return
            self._record_synced = True
            log.debug("home assistant: no earlier discovery record; starting a new one")
            self._publish_record()

    def on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.cfg.status_topic:
            if payload.strip().lower() == b"online":
                log.info("home assistant is online: re-publishing discovery configs")
                self.publish_all()
        elif topic == self.record_topic:
            self._merge_record(payload)

    def _merge_record(self, payload: bytes) -> None:
        """Remove what an earlier run announced for pipelines that are gone; keep the rest."""
        try:
            doc = json.loads(payload) if payload else {}
            entries = dict(doc.get("entities", {}))
        except (ValueError, AttributeError, TypeError):
            log.warning("home assistant: unreadable discovery record on %s; ignored", self.record_topic)
            entries = {}
        with self._lock:
            mine = set(self.record()["entities"])
            for topic, entry in entries.items():
                if topic in mine or not isinstance(topic, str):
                    continue
                pipeline, plugin, runtime = (list(entry) + [None, None, False])[:3]
                current = self.pipelines.get(pipeline) if isinstance(pipeline, str) else None
                if runtime and current is not None and current.plugin == plugin:
                    self._adopted[topic] = (pipeline, plugin)  # found at run time last time; will be again
                    continue
                self.ctx.publish(topic, b"", 1, True)
                self.removed.append(topic)
                log.info("home assistant: removed entity %s (pipeline %s no longer configured)", topic, pipeline)
            self._record_synced = True
            if set(entries) != set(self.record()["entities"]):
                self._publish_record()

    def on_outputs(self, pipeline: str, plugin: str, outputs: Sequence[Output]) -> None:
        new: list[Announced] = []
        profile = self._profile(plugin)
        with self._lock:
            for out in outputs:
                if isinstance(out, State):
                    shape = (pipeline, out.key, _shape(out.data))
                    if shape in self._seen_states:
                        continue
                    self._seen_states.add(shape)
                    for spec in state_entities(out.data, out.key, profile.max_depth, profile.problem_fields):
                        topic, doc = self._state_entity(pipeline, spec)
                        if self._add(topic, doc, pipeline, runtime=True):
                            new.append(self._announced[topic])
                elif isinstance(out, Event):
                    topic = self.config_topic("event", slug(pipeline, "events"))
                    a = self._announced.get(topic)
                    if a is not None and out.type not in a.event_types:
                        a.event_types.append(out.type)
                        a.payload["event_types"] = list(a.event_types)
                        new.append(a)
            synced = self._record_synced
        for a in new:
            self._publish_config(a)
        if new and synced:
            with self._lock:
                self._publish_record()


def _shape(data: Mapping[str, Any]) -> tuple[Any, ...]:
    """The field names and value types of a State's data (what decides whether it can bring new entities)."""
    return tuple((k, _shape(v) if isinstance(v, Mapping) else type(v)) for k, v in data.items())
