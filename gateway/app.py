"""The gateway process: builds pipelines from the config, connects, routes, publishes, stops cleanly."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from gateway import __version__
from gateway.config import GatewayConfig
from gateway.health import HEARTBEAT_FILE, HeartbeatFile
from gateway.inference import ModelRegistry
from gateway.integrations import Integrations
from gateway.messages import InputMessage, Output, RawMessage
from gateway.metrics import ProcessStats
from gateway.mqtt import MqttLink
from gateway.pipeline import DEFAULTS, InputQueue, Pipeline, Rejection
from gateway.plugin import Plugin, PluginContext, plugin_class
from gateway.publisher import Publisher, ResultSink, Source
from gateway.router import Router
from gateway.statestore import StateStore
from gateway.store.service import LOCAL, StoreService

log = logging.getLogger(__name__)
SWITCH_INTERVAL_S = 0.0005


class Gateway:
    """One gateway: MQTT link, router, pipelines with their plugins, publisher and scheduler."""

    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.started_at = time.time()
        self.data_dir = cfg.resolve(cfg.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.models = ModelRegistry(cfg.models, cfg.base_dir)
        self._stop = threading.Event()
        self._process = ProcessStats()
        self._state_stores: list[StateStore] = []
        self.pipelines: list[Pipeline] = []
        self._sources: dict[str, Source] = {}

        routes: list[tuple[str, Pipeline]] = []
        for p_cfg in cfg.pipelines:
            if p_cfg.enabled:
                pipeline = self._build_pipeline(p_cfg.name)
                self.pipelines.append(pipeline)
                routes.extend((f, pipeline) for f in p_cfg.inputs)
        self.router = Router(routes)
        self.integrations = Integrations.for_gateway(cfg, lambda t, p, q, r: self.link.publish(t, p, q, r))
        self.link = MqttLink(
            cfg.mqtt,
            cfg.client_id,
            base_dir=cfg.base_dir,
            will_topic=f"{cfg.topic_prefix}/status",
            subscriptions=self.router.filters(),
            extra_subscriptions=self.integrations.subscriptions(),
            on_message=self._dispatch,
        )
        self.link.add_connection_listener(self._on_connection)
        # Events and summaries are stored before they are published (at-least-once, survives restarts).
        self.store = StoreService(
            cfg.store, cfg.cloud, cfg.gateway_id, self.link, data_dir=self.data_dir, on_error=self._store_error
        )
        self.sink: ResultSink = self.store
        self.publisher = Publisher(
            cfg.gateway_id,
            cfg.topic_prefix,
            self.sink,
            self.link,
            state_min_interval_s=cfg.outputs.state_min_interval_s,
        )
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.heartbeat = HeartbeatFile(self.data_dir / HEARTBEAT_FILE, cfg.metrics.interval_s)

    # -- construction ---------------------------------------------------------------------------------
    def _build_pipeline(self, name: str) -> Pipeline:
        p_cfg = next(p for p in self.cfg.pipelines if p.name == name)
        cls: type[Plugin[Any]] = plugin_class(p_cfg.plugin)
        size, policy = DEFAULTS[cls.input_kind]
        queue = InputQueue(p_cfg.queue.size or size, p_cfg.queue.policy or policy, p_cfg.queue.block_timeout_s)
        state = StateStore(self.data_dir / "state.db", name)
        self._state_stores.append(state)
        holder: dict[str, Pipeline] = {}

        def emit(out: Output) -> None:
            holder["p"].emit([out])

        def submit(msg: InputMessage) -> None:
            holder["p"].offer(msg)

        context = PluginContext(
            pipeline=name,
            gateway_id=self.cfg.gateway_id,
            logger=logging.getLogger(f"plugins.{p_cfg.plugin}.{name}"),
            clock=time.time,
            data_dir=self.data_dir / "pipelines" / name,
            models=self.models,
            state=state,
            emit=emit,
            submit=submit,
            config_dir=self.cfg.base_dir,
        )
        context.data_dir.mkdir(parents=True, exist_ok=True)
        plugin = cls(self.cfg.plugin_options(name), context)
        pipeline = Pipeline(name, plugin, queue, self.cfg.input.max_payload_bytes, self._publish, self._reject)
        holder["p"] = pipeline
        return pipeline

    def _source(self, pipeline: Pipeline) -> Source:
        src = self._sources.get(pipeline.name)
        info = pipeline.plugin.model_info()
        model = None if info is None else {"name": info.name, "version": info.version}
        if src is None or src.model != model:
            src = Source(pipeline.name, pipeline.plugin.name, model)
            self._sources[pipeline.name] = src
        return src

    def _dispatch(self, msg: RawMessage) -> bool:
        if self.integrations.handles(msg.topic):
            self.integrations.on_message(msg.topic, msg.payload)
            return True
        return self.router.dispatch(msg)

    def _publish(self, pipeline: Pipeline, outputs: list[Output]) -> None:
        self.publisher.publish_outputs(self._source(pipeline), outputs)
        self.integrations.on_outputs(pipeline.name, pipeline.plugin.name, outputs)

    def _store_error(self, reason: str, detail: str) -> None:
        log.error("store: %s: %s", reason, detail)
        self.publisher.error(f"{reason}: {detail}")

    def _reject(self, r: Rejection) -> None:
        log.warning("pipeline %s rejected a message from %s: %s", r.pipeline, r.topic, r.reason)
        self.publisher.error(r.reason, pipeline=r.pipeline, topic=r.topic, size=r.size)

    # -- running --------------------------------------------------------------------------------------
    def _on_connection(self, up: bool) -> None:
        if up:
            self.publisher.online()
            self.publisher.info(self.info())
            self.integrations.on_connect()

    def info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "started": self.started_at,
            "pipelines": [
                {
                    "name": p.name,
                    "plugin": p.plugin.name,
                    "inputs": next(c.inputs for c in self.cfg.pipelines if c.name == p.name),
                }
                for p in self.pipelines
            ],
            "models": self.models.describe() if hasattr(self.models, "describe") else {},
        }

    def metrics_snapshot(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "uptime_s": round(time.time() - self.started_at, 1),
            "process": self._process.snapshot(),
            "mqtt": {
                "connected": self.link.connected,
                "connects": self.link.connects,
                "disconnects": self.link.disconnects,
                "unrouted": self.router.unrouted,
            },
            "pipelines": {p.name: p.snapshot() for p in self.pipelines},
            "store": self.store.stats(),
        }
        if hasattr(self.models, "describe"):
            doc["models"] = self.models.describe()
        return doc

    def _publish_metrics(self) -> None:
        try:
            doc = self.metrics_snapshot()
            self.publisher.metrics(doc)
            self.integrations.on_metrics(doc)
        except Exception:
            log.exception("metrics failed")
        try:
            self.heartbeat.beat(self.link.connected, {p.name: p.alive for p in self.pipelines})
        except OSError as e:
            log.warning("cannot write the heartbeat %s: %s", self.heartbeat.path, e)

    def _schedule_summaries(self, pipeline: Pipeline, interval: float) -> None:
        state = {"start": time.time()}

        def tick() -> None:
            start, end = state["start"], time.time()
            state["start"] = end

            def run() -> None:
                outputs = list(pipeline.plugin.summarize(start, end))
                pipeline.emit(outputs)

            pipeline.queue.call_soon(run)

        self.scheduler.add_job(
            tick, "interval", seconds=interval, id=f"summary-{pipeline.name}", max_instances=1, coalesce=True
        )

    def start(self) -> None:
        # The MQTT network thread blocks on the socket for every packet and must get the interpreter back
        # quickly while pipeline workers run Python: with the default 5 ms switch interval it waits behind
        # a busy worker after each packet (the "convoy" effect) and intake drops several-fold.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        for p in self.pipelines:
            p.start()
        for p_cfg in self.cfg.pipelines:
            pipeline = next((p for p in self.pipelines if p.name == p_cfg.name), None)
            if pipeline is not None:
                self._schedule_summaries(pipeline, p_cfg.summary_interval_s)
        self.scheduler.add_job(
            self._publish_metrics,
            "interval",
            seconds=self.cfg.metrics.interval_s,
            id="metrics",
            max_instances=1,
            coalesce=True,
        )
        self.scheduler.start()
        self.integrations.start()
        self.store.start()
        self.link.start()
        log.info(
            "gateway %s started: %d pipeline(s), broker %s:%s, prefix %s",
            self.cfg.gateway_id,
            len(self.pipelines),
            self.cfg.mqtt.host,
            self.cfg.mqtt.port,
            self.cfg.topic_prefix,
        )

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; then drain and exit 0."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        self.start()
        while not self._stop.wait(0.5):
            pass
        return self.stop()

    def _await_delivery(self, deadline: float) -> None:
        """Give the local deliverer until the drain deadline (at least a moment) to empty its backlog;
        what is left stays in the store and goes out after the next start."""
        end = max(deadline, time.monotonic() + 1.0)
        while time.monotonic() < end and self.link.connected:
            d = self.store.stats()["destinations"].get(LOCAL, {})
            if not d.get("pending") and not d.get("in_flight"):
                return
            time.sleep(0.05)

    def stop(self) -> int:
        log.info("stopping: intake closed, draining for up to %.1f s", self.cfg.drain_timeout_s)
        self.router.stop_intake()
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        left = 0
        for p in self.pipelines:
            left += p.stop(deadline)
        if left:
            log.warning("%d queued message(s) not processed before the drain deadline", left)
        for p in self.pipelines:
            try:
                p.plugin.close()
            except Exception:
                log.exception("pipeline %s: close failed", p.name)
        self.scheduler.shutdown(wait=False)
        self.publisher.close()
        self._await_delivery(deadline)
        self._publish_metrics()
        self.integrations.stop()
        self.store.stop()
        self.link.stop(final=(self.publisher.status_topic, b"offline"))
        for s in self._state_stores:
            s.close()
        self.heartbeat.stopped()
        log.info("stopped")
        return 0
