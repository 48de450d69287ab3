"""``edge-gateway watch``: a live terminal view of a running gateway, built only from its MQTT output.

It subscribes to ``<prefix>/#`` and shows what a person on a headless device wants to see at a glance:
status and version, each pipeline's message rates, counts, latency and backlog, the latest state per key
(health, scores, counts) with alarms highlighted, recent events and errors. Plain ANSI (no curses, no
extra packages): it redraws in place on a terminal and works over SSH; ``--once`` prints one frame of
plain text, for scripts, tests and the demo.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

GATEWAY_TOPICS = frozenset({"status", "info", "metrics", "errors", "discovery"})
ALARM_FIELDS = ("alarm", "anomaly", "is_anomaly", "fault", "in_alarm", "anomalous")
PREFERRED = ("health", "rul", "rul_h", "rul_s", "rul_d", "score", "active", "anomaly", "alarm", "value", "state",
             "occupancy")  # fmt: skip
# Fields that mean "in alarm" only for one plugin (``active`` of an anomaly series).
PLUGIN_ALARM_FIELDS = {"anomaly_detection": ("active",)}

RESET, BOLD, DIM, RED, GREEN, YELLOW, CYAN = (
    "\x1b[0m",
    "\x1b[1m",
    "\x1b[2m",
    "\x1b[31m",
    "\x1b[32m",
    "\x1b[33m",
    "\x1b[36m",
)


def fmt_num(v: Any) -> str:
    """A compact number: integers as is, floats with up to three significant decimals."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        a = abs(v)
        return f"{v:.0f}" if a >= 1000 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 1 else f"{v:.3g}"
    return "-" if v is None else str(v)


def fmt_rate(v: float | None) -> str:
    """Messages per second with one decimal."""
    return "-" if v is None else f"{v:.1f}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Scalar fields of a nested mapping as ``("a.b.c", value)``, preferred names first."""
    out: list[tuple[str, Any]] = []
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.extend(flatten(v, f"{name}."))
        elif not isinstance(v, (list, tuple)) and str(k) not in ("ts", "timestamp", "source"):
            out.append((name, v))
    rank = {n: i for i, n in enumerate(PREFERRED)}
    return sorted(out, key=lambda kv: rank.get(kv[0].rsplit(".", 1)[-1], len(rank)))


def in_alarm(data: Mapping[str, Any], plugin: str = "") -> bool:
    """Whether a State's data says an alarm or anomaly is active."""
    return any(data.get(f) is True for f in (*ALARM_FIELDS, *PLUGIN_ALARM_FIELDS.get(plugin, ())))


@dataclass
class PipelineView:
    """What is known of one pipeline."""

    name: str
    plugin: str = "?"
    counters: dict[str, Any] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    states: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    state_ts: dict[str, float] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)
    telemetry: Counter[str] = field(default_factory=Counter)
    last_summary: Mapping[str, Any] | None = None


class GatewayView:
    """The model behind the screen: fed MQTT messages under one prefix, rendered as text lines."""

    def __init__(self, prefix: str, max_events: int = 8, max_errors: int = 3) -> None:
        self.prefix = prefix.rstrip("/")
        self.status: str | None = None
        self.info: Mapping[str, Any] = {}
        self.metrics: Mapping[str, Any] = {}
        self.metrics_at: float | None = None
        self._prev_metrics: Mapping[str, Any] | None = None
        self.pipelines: dict[str, PipelineView] = {}
        self.events: deque[tuple[float, str, str, Mapping[str, Any]]] = deque(maxlen=max_events)
        self.errors: deque[tuple[float, str]] = deque(maxlen=max_errors)
        self.error_count = 0
        self.messages = 0
        self._lock = threading.Lock()

    def pipeline(self, name: str) -> PipelineView:
        p = self.pipelines.get(name)
        if p is None:
            p = self.pipelines[name] = PipelineView(name)
        return p

    @property
    def has_data(self) -> bool:
        return bool(self.metrics or self.info or self.status)

    def feed(self, topic: str, payload: bytes, now: float | None = None) -> None:
        """Take one message published under the prefix."""
        now = time.time() if now is None else now
        if not topic.startswith(self.prefix + "/"):
            return
        levels = topic[len(self.prefix) + 1 :].split("/")
        with self._lock:
            self.messages += 1
            # a payload of another shape is skipped: the gateway's own schemas are checked elsewhere
            with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
                self._feed(levels, payload, now)

    def _feed(self, levels: list[str], payload: bytes, now: float) -> None:
        head = levels[0]
        if len(levels) == 1:
            if head == "status":
                self.status = payload.decode(errors="replace") or None
            elif head == "info":
                self.info = json.loads(payload)
                for p in self.info.get("pipelines", []):
                    self.pipeline(p["name"]).plugin = p.get("plugin", "?")
            elif head == "metrics":
                self._take_metrics(json.loads(payload), now)
            elif head == "errors":
                doc = json.loads(payload)
                self.error_count += 1
                where = doc.get("pipeline") or doc.get("topic") or ""
                self.errors.append((float(doc.get("ts", now)), f"{where}: {doc.get('reason', '?')}".strip(": ")))
            return
        p = self.pipeline(head)
        kind = levels[1]
        if kind == "state":
            doc = json.loads(payload) if payload else None
            key = "/".join(levels[2:]) or "-"
            if doc is None:
                p.states.pop(key, None)
                return
            p.plugin = doc.get("plugin", p.plugin)
            p.states[key] = doc.get("data") or {}
            p.state_ts[key] = float(doc.get("ts", now))
        elif kind == "event":
            doc = json.loads(payload)
            p.plugin = doc.get("plugin", p.plugin)
            p.events[doc.get("type", "?")] += 1
            self.events.append((float(doc.get("ts", now)), head, str(doc.get("type", "?")), doc.get("data") or {}))
        elif kind == "summary":
            p.last_summary = json.loads(payload)
        else:
            p.telemetry["/".join(levels[1:])] += 1

    def _take_metrics(self, doc: Mapping[str, Any], now: float) -> None:
        prev = self.metrics
        self.metrics, self.metrics_at = doc, now
        dt = float(doc.get("ts", now)) - float(prev.get("ts", 0.0)) if prev else 0.0
        for name, counters in (doc.get("pipelines") or {}).items():
            p = self.pipeline(name)
            old = p.counters
            p.counters = dict(counters)
            if old and dt > 0:
                p.rates = {k: max(0.0, (counters.get(k, 0) - old.get(k, 0)) / dt)
                           for k in ("in", "processed", "out") if isinstance(counters.get(k), (int, float))}  # fmt: skip

    # -- rendering --------------------------------------------------------------------------------------
    def render(self, width: int = 100, now: float | None = None, color: bool = False, max_keys: int = 6) -> list[str]:
        """The screen as lines (no cursor control); ``color`` adds ANSI colours."""
        now = time.time() if now is None else now

        def c(text: str, *codes: str) -> str:
            return "".join(codes) + text + RESET if color else text

        with self._lock:
            lines: list[str] = []
            status = self.status or "unknown"
            status_txt = c(status.upper(), BOLD, GREEN if status == "online" else RED)
            version = self.info.get("version", "?")
            m = self.metrics
            proc = m.get("process") or {}
            mqtt = m.get("mqtt") or {}
            age = None if self.metrics_at is None else now - self.metrics_at
            head = (
                f"{c('edge-gateway', BOLD)} {self.prefix}  {status_txt}  v{version}  up {fmt_duration(m.get('uptime_s'))}"
                f"  rss {fmt_num(proc.get('rss_mb'))} MB  cpu {fmt_num(proc.get('cpu_percent'))}%"
                f"  mqtt {'ok' if mqtt.get('connected', True) else 'DOWN'}  metrics {fmt_duration(age)} ago"
            )
            lines.append(head)
            lines.append("")
            cols = f"{'PIPELINE':<16} {'PLUGIN':<22} {'IN/s':>7} {'OUT/s':>7} {'PROCESSED':>10} {'REJ':>5} {'DROP':>5} {'ERR':>5} {'P50ms':>7} {'P95ms':>7} {'BACKLOG':>9}"
            lines.append(c(cols, BOLD))
            for name in sorted(self.pipelines):
                p = self.pipelines[name]
                k = p.counters
                lat = k.get("latency_ms") or {}
                q = k.get("queue") or {}
                backlog = f"{q.get('depth', '-')}/{q.get('size', '-')}" if q else "-"
                row = (
                    f"{name[:16]:<16} {p.plugin[:22]:<22} {fmt_rate(p.rates.get('in')):>7} {fmt_rate(p.rates.get('out')):>7}"
                    f" {fmt_num(k.get('processed')):>10} {fmt_num(k.get('rejected')):>5} {fmt_num(k.get('dropped')):>5}"
                    f" {fmt_num(k.get('errors')):>5} {fmt_num(lat.get('p50')):>7} {fmt_num(lat.get('p95')):>7} {backlog:>9}"
                )
                busy = (
                    bool(q)
                    and isinstance(q.get("depth"), int)
                    and isinstance(q.get("size"), int)
                    and q["depth"] > q["size"] // 2
                )
                bad = any(isinstance(k.get(x), int) and k[x] > 0 for x in ("errors", "rejected", "dropped"))
                lines.append(c(row, YELLOW) if busy or bad else row)
            alarms: list[str] = []
            for name in sorted(self.pipelines):
                p = self.pipelines[name]
                if not p.states and not p.events:
                    continue
                lines.append("")
                ev = "  ".join(f"{t}={n}" for t, n in sorted(p.events.items()))
                lines.append(c(f"{name}", BOLD, CYAN) + (f"  events: {ev}" if ev else ""))
                keys = sorted(p.states)
                for key in keys[:max_keys]:
                    data = p.states[key]
                    fields = "  ".join(f"{n}={fmt_num(v)}" for n, v in flatten(data))
                    alarm = in_alarm(data, p.plugin)
                    text = f"  {key[:20]:<20} {fields}"
                    lines.append(c(text, RED, BOLD) if alarm else text)
                    if alarm:
                        alarms.append(f"{name}/{key}")
                if len(keys) > max_keys:
                    lines.append(f"  ... {len(keys) - max_keys} more")
                    alarms.extend(f"{name}/{k}" for k in keys[max_keys:] if in_alarm(p.states[k], p.plugin))
            lines.append("")
            lines.append(c(f"ALARMS ({len(alarms)}): " + ", ".join(alarms), RED, BOLD) if alarms else "alarms: none")
            if self.events:
                lines.append("")
                lines.append(c("recent events", BOLD))
                for ts, pipeline, etype, data in reversed(self.events):
                    detail = " ".join(f"{n}={fmt_num(v)}" for n, v in flatten(data)[:6])
                    lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(ts))} {pipeline} {etype} {detail}")
            lines.append("")
            if self.error_count:
                lines.append(c(f"errors: {self.error_count}", RED))
                for ts, text in reversed(self.errors):
                    lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(ts))} {text}")
            else:
                lines.append("errors: 0")
        return [_clip(line, width) for line in lines]


def _clip(line: str, width: int) -> str:
    """Cut a line to the terminal width without cutting an ANSI sequence (visible characters count)."""
    out, visible, i = [], 0, 0
    while i < len(line):
        if line[i] == "\x1b":
            j = line.find("m", i)
            j = len(line) - 1 if j < 0 else j
            out.append(line[i : j + 1])
            i = j + 1
            continue
        if visible >= width:
            i += 1
            continue
        out.append(line[i])
        visible += 1
        i += 1
    return "".join(out)


class Screen:
    """Redraws a frame in place on an ANSI terminal (home, overwrite, clear the rest); plain text otherwise."""

    def __init__(self, out: TextIO, ansi: bool) -> None:
        self.out = out
        self.ansi = ansi
        self._first = True

    def draw(self, lines: Sequence[str]) -> None:
        if not self.ansi:
            self.out.write("\n".join(lines) + "\n\n")
        else:
            prefix = "\x1b[?25l\x1b[2J" if self._first else ""
            self.out.write(prefix + "\x1b[H" + "".join(line + "\x1b[K\n" for line in lines) + "\x1b[J")
        self._first = False
        self.out.flush()

    def close(self) -> None:
        if self.ansi and not self._first:
            self.out.write("\x1b[?25h")
            self.out.flush()


@dataclass
class WatchTarget:
    """Where to watch: broker settings and the gateway's topic prefix."""

    mqtt: Any
    prefix: str
    base_dir: Path | None = None


def resolve_target(args: argparse.Namespace) -> WatchTarget:
    """Broker and prefix from ``-c CONFIG`` and/or ``--host/--port/--prefix/--gateway``."""
    from gateway.config import MqttConfig

    if args.config is not None:
        from gateway.cli import load_or_report

        cfg = load_or_report(args.config)
        if cfg is None:
            raise SystemExit(2)
        mqtt, prefix, base = cfg.mqtt, cfg.topic_prefix, cfg.base_dir
    else:
        mqtt, prefix, base = MqttConfig.model_validate({}), None, None
    updates: dict[str, Any] = {}
    if args.host:
        updates["host"] = args.host
    if args.port:
        updates["port"] = args.port
    if updates:
        mqtt = mqtt.model_copy(update=updates)
    if args.prefix:
        prefix = args.prefix.rstrip("/")
    elif args.gateway:
        prefix = f"edge/{args.gateway}"
    if prefix is None:
        raise SystemExit("error: give -c CONFIG, --prefix or --gateway (which gateway to watch)")
    return WatchTarget(mqtt, prefix, base)


def watch(
    target: WatchTarget,
    *,
    once: bool = False,
    duration: float | None = None,
    interval: float = 1.0,
    wait: float = 5.0,
    out: TextIO = sys.stdout,
    ansi: bool | None = None,
    width: int | None = None,
) -> int:
    """Run the view; returns 0, or 1 when ``once`` saw nothing from the gateway within ``wait`` seconds."""
    from gateway.integrations.client import make_client

    view = GatewayView(target.prefix)
    client = make_client(
        target.mqtt, f"edge-gateway-watch-{os.getpid()}-{time.monotonic_ns() % 100000}", target.base_dir
    )
    connected = threading.Event()

    def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            c.subscribe(f"{target.prefix}/#", qos=0)
            connected.set()

    client.on_connect = on_connect
    client.on_message = lambda _c, _u, msg: view.feed(msg.topic, bytes(msg.payload))
    try:
        client.connect(target.mqtt.host, target.mqtt.port, keepalive=target.mqtt.keepalive_s)
    except OSError as e:
        print(f"error: cannot connect to {target.mqtt.host}:{target.mqtt.port}: {e}", file=sys.stderr)
        return 2
    client.loop_start()
    use_ansi = (out.isatty() and not once) if ansi is None else ansi
    screen = Screen(out, use_ansi)

    def cols() -> int:
        return width or shutil.get_terminal_size((120, 40)).columns

    try:
        if once:
            deadline = time.monotonic() + wait
            # retained status/info/metrics arrive at once; give metrics a moment so rates can be shown
            while time.monotonic() < deadline and not (view.metrics and view.info):
                time.sleep(0.05)
            if not view.has_data:
                print(f"no messages from a gateway under {target.prefix}/ within {wait:g} s", file=sys.stderr)
                return 1
            time.sleep(min(0.3, max(0.0, deadline - time.monotonic())))
            screen.draw(view.render(cols(), color=False))
            return 0
        end = None if duration is None else time.monotonic() + duration
        while end is None or time.monotonic() < end:
            screen.draw(view.render(cols(), color=use_ansi))
            step = interval if end is None else max(0.0, min(interval, end - time.monotonic()))
            time.sleep(step)
        screen.draw(view.render(cols(), color=use_ansi))
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        screen.close()
        client.disconnect()
        client.loop_stop()


def cmd_watch(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    return watch(
        target,
        once=args.once,
        duration=args.duration,
        interval=args.interval,
        wait=args.wait,
        ansi=False if args.no_color else None,
    )


def register_cli(subparsers: Any) -> None:
    """Add ``watch`` to the ``edge-gateway`` command."""
    p = subparsers.add_parser(
        "watch",
        help="live terminal view of a running gateway",
        description="A live view of a running gateway from its MQTT output: status, pipelines, rates, counts, "
        "health, alarms, backlog, events and errors. Works over SSH; Ctrl-C to quit.",
    )
    p.add_argument("-c", "--config", type=Path, help="the gateway's YAML config (broker and topic prefix)")
    p.add_argument("--host", help="broker host (overrides the config)")
    p.add_argument("--port", type=int, help="broker port (overrides the config)")
    p.add_argument("--prefix", help="the gateway's topic prefix, e.g. edge/gw-1 (overrides the config)")
    p.add_argument("--gateway", help="gateway id, for the default prefix edge/<id>")
    p.add_argument("--once", action="store_true", help="print one plain-text frame and exit (1 if nothing was seen)")
    p.add_argument("--duration", type=float, help="refresh for this many seconds, then exit")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    p.add_argument("--wait", type=float, default=5.0, help="with --once: how long to wait for the gateway (default 5)")
    p.add_argument("--no-color", action="store_true", help="plain text, no colours or cursor movement")
    p.set_defaults(func=cmd_watch)
