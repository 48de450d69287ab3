"""``edge-gateway outbox status|replay|purge``: inspect and operate the store.

Each command's work is a function taking a :class:`StoreConfig` (``outbox_status``, ``outbox_replay``,
``outbox_purge``); the argparse handlers only find the config and print. The commands may run beside a
running gateway (SQLite WAL lets them); the gateway picks up replayed records on its next poll and
re-reads the sizes at its next maintenance pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gateway.store.config import StoreConfig
from gateway.store.errors import StoreUnavailableError
from gateway.store.outbox import DEFAULT_DESTINATIONS, Outbox
from gateway.store.records import Selection

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _open(config: StoreConfig, data_dir: Path | None) -> Outbox:
    if config.backend != "sqlite":
        raise StoreUnavailableError(None, "not_persistent", "the memory backend keeps nothing to inspect")
    path = config.path if data_dir is None or config.path.is_absolute() else data_dir / config.path
    if not path.exists():
        raise StoreUnavailableError(path, "cannot_open", "no database at this path (has the gateway run yet?)")
    return Outbox.open(config, DEFAULT_DESTINATIONS, data_dir=data_dir)


def outbox_status(config: StoreConfig, data_dir: Path | None = None, *, check: bool = False) -> dict[str, Any]:
    """Sizes, counters and backlog per destination (plus ``integrity`` with ``check``)."""
    ob = _open(config, data_dir)
    try:
        doc = ob.stats().as_dict()
        doc["path"] = str(ob.path)
        if check:
            doc["integrity"] = ob.integrity()
        return doc
    finally:
        ob.close()


def outbox_replay(
    config: StoreConfig, destination: str, selection: Selection | None = None, data_dir: Path | None = None
) -> int:
    """Make records already sent to ``destination`` pending again; returns how many."""
    ob = _open(config, data_dir)
    try:
        before = ob.stats().counters.get("replayed", 0)
        ob.replay(destination, selection)
        ob.flush()
        return ob.stats().counters.get("replayed", 0) - before
    finally:
        ob.close()


def outbox_purge(
    config: StoreConfig,
    selection: Selection | None = None,
    *,
    undelivered_too: bool = False,
    data_dir: Path | None = None,
) -> dict[str, int]:
    """Remove matching records; returns ``{"purged": undelivered removed, "pruned": delivered removed}``."""
    ob = _open(config, data_dir)
    try:
        before = ob.stats().counters
        ob.purge(selection, undelivered_too=undelivered_too)
        ob.flush()
        after = ob.stats().counters
        return {k: after.get(k, 0) - before.get(k, 0) for k in ("purged", "pruned")}
    finally:
        ob.close()


# -- argparse ----------------------------------------------------------------------------------------


def _time(text: str) -> float:
    """An ISO 8601 time, or a duration back from now such as ``90s``, ``15m``, ``6h``, ``2d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(text[:-1]) * units[text[-1]]
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (ISO 8601, or e.g. 30m / 6h / 2d ago)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(kind=args.kind, pipeline=args.pipeline, since=args.since, until=args.until)


def _store_config(args: argparse.Namespace) -> tuple[StoreConfig, Path | None] | None:
    if args.db is not None:
        return StoreConfig(path=args.db), None
    from gateway.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    return cfg.store, cfg.resolve(cfg.data_dir)


def _run(args: argparse.Namespace, work: Any) -> int:
    found = _store_config(args)
    if found is None:
        return EXIT_USAGE
    config, data_dir = found
    try:
        result = work(config, data_dir)
    except StoreUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(_human(result))
    return EXIT_OK


def _human(result: Any) -> str:
    if not isinstance(result, dict) or "destinations" not in result:
        return json.dumps(result)
    lines = [f"store: {result['path']} ({result['file_bytes'] / 1e6:.1f} MB on disk)"]
    lines.append(f"health: {'ok' if result['healthy'] else result['error']}")
    if "integrity" in result:
        lines.append(f"integrity: {result['integrity']}")
    lines.append(f"records: {result['rows']} ({result['bytes']} payload bytes)")
    for kind, v in result["by_kind"].items():
        lines.append(f"  {kind:12} {v['rows']:>9} rows {v['bytes']:>12} bytes")
    lines.append("destinations:")
    for name, d in result["destinations"].items():
        age = "-" if d["oldest_unsent_age_s"] is None else f"{d['oldest_unsent_age_s']:.0f} s"
        lines.append(f"  {name:12} pending {d['pending']:>9}  oldest unsent {age:>10}  delivered {d['delivered']}")
    lines.append("counters: " + ", ".join(f"{k} {v}" for k, v in result["counters"].items()))
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    return _run(args, lambda cfg, d: outbox_status(cfg, d, check=args.check))


def _cmd_replay(args: argparse.Namespace) -> int:
    return _run(args, lambda cfg, d: {"replayed": outbox_replay(cfg, args.destination, _selection(args), d)})


def _cmd_purge(args: argparse.Namespace) -> int:
    if args.undelivered and not args.yes:
        print("error: --undelivered removes results never delivered; add --yes to confirm", file=sys.stderr)
        return EXIT_USAGE
    return _run(args, lambda cfg, d: outbox_purge(cfg, _selection(args), undelivered_too=args.undelivered, data_dir=d))


def register_cli(subparsers: Any) -> None:
    """Add ``outbox status|replay|purge`` to the gateway's argparse CLI."""
    outbox = subparsers.add_parser(
        "outbox",
        help="inspect and operate the store-and-forward outbox",
        description="Inspect and operate the store-and-forward outbox (it may run beside a running gateway).",
    )
    commands = outbox.add_subparsers(dest="outbox_command", metavar="SUBCOMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", type=Path, default=Path("config/gateway.yaml"), help="the gateway's config")
        p.add_argument("--db", type=Path, default=None, help="a store file to open directly instead of the config's")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    def select(p: argparse.ArgumentParser) -> None:
        p.add_argument("--kind", help="only records of this kind (event, summary, ...)")
        p.add_argument("--pipeline", help="only records of this pipeline")
        p.add_argument("--since", type=_time, help="created at or after (ISO 8601, or 30m / 6h / 2d ago)")
        p.add_argument("--until", type=_time, help="created before (ISO 8601, or 30m / 6h / 2d ago)")

    p = commands.add_parser("status", help="sizes, counters and backlog per destination")
    common(p)
    p.add_argument("--check", action="store_true", help="also run SQLite's integrity check")
    p.set_defaults(func=_cmd_status)

    p = commands.add_parser("replay", help="send records already delivered again")
    common(p)
    select(p)
    p.add_argument("--destination", default="local", choices=list(DEFAULT_DESTINATIONS), help="where to send again")
    p.set_defaults(func=_cmd_replay)

    p = commands.add_parser("purge", help="remove records (delivered ones unless --undelivered)")
    common(p)
    select(p)
    p.add_argument("--undelivered", action="store_true", help="also remove records not yet delivered (counted)")
    p.add_argument("--yes", action="store_true", help="confirm removing undelivered records")
    p.set_defaults(func=_cmd_purge)
