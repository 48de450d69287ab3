"""The gateway's heartbeat file and the ``edge-gateway health`` check built on it.

The running gateway rewrites ``<data_dir>/health.json`` at every metrics interval (:class:`HeartbeatFile`).
``edge-gateway health`` (also ``python -m gateway.health``, which starts faster: the container
HEALTHCHECK uses it) reads that file and exits 0 when the gateway is healthy:

* the heartbeat is fresh: a gateway whose scheduler or process is stuck stops rewriting it;
* every pipeline worker is alive: a dead worker means input piles up unprocessed;
* the MQTT link is up, or has been down for less than ``--max-disconnected`` seconds (the gateway
  reconnects by itself; a long outage is worth a restart and an alert).

The file is small JSON, written atomically (temporary file + rename), so a reader never sees half of it::

    {"version": 1, "ts": 1763820000.1, "pid": 7, "interval_s": 10.0, "state": "running",
     "mqtt": {"connected": true, "since": 1763819990.0},
     "pipelines": {"traffic": {"alive": true}}}

The check needs no config: it finds the file from ``--file``, else ``$EDGE_GATEWAY_DATA_DIR``, else the
``data_dir`` of ``--config``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEARTBEAT_FILE = "health.json"
DEFAULT_CONFIG = Path("config/gateway.yaml")  # the command line's default config
HEARTBEAT_VERSION = 1
EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1
DEFAULT_MAX_DISCONNECTED_S = 120.0
# A heartbeat older than this many metrics intervals (and at least MIN_MAX_AGE_S) is stale.
STALE_INTERVALS = 3.0
MIN_MAX_AGE_S = 30.0


class HeartbeatFile:
    """Writes the gateway's heartbeat; the gateway calls :meth:`beat` at every metrics interval.

    ``since`` of the MQTT link is tracked here: the time the link last changed between up and down.
    """

    def __init__(self, path: Path, interval_s: float, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.interval_s = float(interval_s)
        self._clock = clock
        self._connected: bool | None = None
        self._since: float | None = None

    def beat(self, mqtt_connected: bool, pipelines_alive: Mapping[str, bool]) -> dict[str, Any]:
        """Write a fresh heartbeat and return what was written."""
        now = self._clock()
        if mqtt_connected != self._connected:
            self._connected = mqtt_connected
            self._since = now
        doc = {
            "version": HEARTBEAT_VERSION,
            "ts": now,
            "pid": os.getpid(),
            "interval_s": self.interval_s,
            "state": "running",
            "mqtt": {"connected": mqtt_connected, "since": self._since},
            "pipelines": {name: {"alive": bool(alive)} for name, alive in pipelines_alive.items()},
        }
        self._write(doc)
        return doc

    def stopped(self) -> None:
        """Mark a clean stop, so a check right after shutdown says why the gateway is not healthy."""
        self._write({"version": HEARTBEAT_VERSION, "ts": self._clock(), "pid": os.getpid(), "state": "stopped"})

    def _write(self, doc: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".health-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The verdict on one heartbeat: healthy or not, and every reason why not."""

    healthy: bool
    problems: tuple[str, ...]
    summary: str

    def __str__(self) -> str:
        if self.healthy:
            return f"healthy: {self.summary}"
        return "unhealthy: " + "; ".join(self.problems)


def assess(
    doc: Any,
    now: float,
    max_age_s: float | None = None,
    max_disconnected_s: float = DEFAULT_MAX_DISCONNECTED_S,
) -> HealthReport:
    """Judge a parsed heartbeat ``doc`` at time ``now``."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("ts"), (int, float)):
        return HealthReport(False, ("the heartbeat file is not a gateway heartbeat",), "")
    if doc.get("state") == "stopped":
        return HealthReport(False, ("the gateway has stopped",), "")
    problems: list[str] = []
    interval = doc.get("interval_s")
    if max_age_s is None:
        base = float(interval) if isinstance(interval, (int, float)) and interval > 0 else 10.0
        max_age_s = max(MIN_MAX_AGE_S, STALE_INTERVALS * base)
    age = now - float(doc["ts"])
    if age > max_age_s:
        problems.append(
            f"the heartbeat is {age:.0f} s old (limit {max_age_s:.0f} s): the gateway is stuck or not running"
        )

    mqtt_doc = doc.get("mqtt")
    mqtt: Mapping[str, Any] = mqtt_doc if isinstance(mqtt_doc, Mapping) else {}
    connected = bool(mqtt.get("connected"))
    if not connected:
        since = mqtt.get("since")
        down_for = now - float(since) if isinstance(since, (int, float)) else None
        if down_for is None or down_for > max_disconnected_s:
            how_long = f" for {down_for:.0f} s" if down_for is not None else ""
            problems.append(f"the MQTT link has been down{how_long} (limit {max_disconnected_s:.0f} s)")

    pipelines_doc = doc.get("pipelines")
    pipelines: Mapping[str, Any] = pipelines_doc if isinstance(pipelines_doc, Mapping) else {}
    dead = sorted(name for name, p in pipelines.items() if not (isinstance(p, Mapping) and p.get("alive")))
    if dead:
        problems.append(f"pipeline worker(s) not running: {', '.join(dead)}")

    link = "mqtt connected" if connected else "mqtt reconnecting"
    summary = (
        f"heartbeat {max(age, 0.0):.0f} s old, {link}, {len(pipelines) - len(dead)}/{len(pipelines)} pipeline(s) alive"
    )
    return HealthReport(not problems, tuple(problems), summary)


def heartbeat_path(file: Path | None = None, config: Path | None = None) -> Path:
    """Where the heartbeat is: ``file``, else ``$EDGE_GATEWAY_DATA_DIR``, else the data_dir of ``config``
    (or of ``config/gateway.yaml``, the command line's default, when it exists)."""
    if file is not None:
        return file
    data_dir = os.environ.get("EDGE_GATEWAY_DATA_DIR")
    if data_dir:
        return Path(data_dir) / HEARTBEAT_FILE
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    if config is not None:
        from gateway.config import load_config  # only here: loading a config imports every plugin

        cfg = load_config(config)
        return cfg.resolve(cfg.data_dir) / HEARTBEAT_FILE
    return Path("data") / HEARTBEAT_FILE


def check(
    path: Path,
    now: float | None = None,
    max_age_s: float | None = None,
    max_disconnected_s: float = DEFAULT_MAX_DISCONNECTED_S,
) -> HealthReport:
    """Read the heartbeat at ``path`` and judge it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return HealthReport(False, (f"no heartbeat at {path}: the gateway has not started (yet)",), "")
    except OSError as e:
        return HealthReport(False, (f"cannot read {path}: {e.strerror or e}",), "")
    try:
        doc = json.loads(text)
    except ValueError:
        return HealthReport(False, (f"{path} is not valid JSON",), "")
    return assess(doc, time.time() if now is None else now, max_age_s, max_disconnected_s)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c", "--config", type=Path, help=f"the gateway's config, to find its data_dir (default: {DEFAULT_CONFIG})"
    )
    p.add_argument("--file", type=Path, help="the heartbeat file (default: <data_dir>/health.json)")
    p.add_argument(
        "--max-age",
        type=float,
        metavar="SECONDS",
        help=f"oldest acceptable heartbeat (default: {STALE_INTERVALS:g} metrics intervals, at least {MIN_MAX_AGE_S:g} s)",
    )
    p.add_argument(
        "--max-disconnected",
        type=float,
        default=DEFAULT_MAX_DISCONNECTED_S,
        metavar="SECONDS",
        help="longest acceptable MQTT outage (default: %(default)g s)",
    )
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")


def cmd_health(args: argparse.Namespace) -> int:
    """Print the verdict; exit 0 when healthy, 1 otherwise (the exit codes Docker's HEALTHCHECK expects)."""
    try:
        path = heartbeat_path(args.file, args.config)
    except Exception as e:  # a config that does not load: say so, and count it as unhealthy
        print(f"unhealthy: cannot find the heartbeat: {e}")
        return EXIT_UNHEALTHY
    report = check(path, max_age_s=args.max_age, max_disconnected_s=args.max_disconnected)
    if args.json:
        print(json.dumps({"healthy": report.healthy, "problems": list(report.problems), "summary": report.summary}))
    else:
        print(report)
    return EXIT_HEALTHY if report.healthy else EXIT_UNHEALTHY


def register_cli(subparsers: Any) -> None:
    """Add ``edge-gateway health`` to the command line."""
    p = subparsers.add_parser(
        "health",
        help="check the running gateway's heartbeat (exit 0 if healthy)",
        description="Check the heartbeat the running gateway writes to <data_dir>/health.json: fresh, MQTT link up "
        "(or down for less than --max-disconnected), every pipeline worker alive. Exit 0 if healthy, 1 otherwise.",
    )
    _add_arguments(p)
    p.set_defaults(func=cmd_health)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.health``: the same check without loading the full command line."""
    parser = argparse.ArgumentParser(prog="python -m gateway.health", description=cmd_health.__doc__)
    _add_arguments(parser)
    return cmd_health(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
