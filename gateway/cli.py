"""The ``edge-gateway`` command: run, check, config, plugins, models, outbox, demo."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import __version__

EXIT_OK = 0
EXIT_CONFIG = 2
DEFAULT_CONFIG = "config/gateway.yaml"

log = logging.getLogger(__name__)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path(DEFAULT_CONFIG),
        help=f"the gateway's YAML config (default: {DEFAULT_CONFIG}); EDGE_GATEWAY_* variables override it",
    )


def load_or_report(path: Path) -> Any:
    """Load the config, or print its problems to stderr and return None."""
    from gateway.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.app import Gateway
    from gateway.logs import setup_logging

    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_CONFIG
    setup_logging(args.log_level or cfg.logging.level, args.log_format or cfg.logging.format)
    try:
        gw = Gateway(cfg)
    except Exception as e:  # a model that does not load, a data dir that cannot be created...
        log.error("cannot start: %s", e)
        print(f"error: cannot start: {e}", file=sys.stderr)
        return EXIT_CONFIG
    return gw.run()


def _broker_reachable(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"broker {host}:{port} is not reachable: {e.strerror or e}"


def check_config(path: Path, broker: bool = False, timeout: float = 3.0) -> list[str]:
    """Every problem with a config file: fields, plugin options, model files, and optionally the broker."""
    from gateway.config import ConfigError, load_config

    try:
        cfg = load_config(path)
    except ConfigError as e:
        return [str(p) for p in e.problems]
    problems: list[str] = []
    from gateway.inference import ModelRegistry

    registry = ModelRegistry(cfg.models, cfg.base_dir)
    for name in registry.names():
        try:
            model = registry.get(name)
            model.close()
        except Exception as e:
            problems.append(f"models.{name}: {e}")
    if broker:
        err = _broker_reachable(cfg.mqtt.host, cfg.mqtt.port, timeout)
        if err:
            problems.append(f"mqtt: {err}")
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    problems = check_config(args.config, broker=args.broker)
    if problems:
        print(f"{args.config}: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{args.config}: ok")
    return EXIT_OK


def config_schema(plugin: str | None = None) -> dict[str, Any]:
    """The JSON Schema of the config file, or of one plugin's options."""
    from gateway.config import GatewayConfig
    from gateway.plugin import plugin_class, registered_plugins

    if plugin is not None:
        return plugin_class(plugin).options_model.model_json_schema()
    schema = GatewayConfig.model_json_schema()
    schema["x-plugin-options"] = {
        name: cls.options_model.model_json_schema() for name, cls in sorted(registered_plugins().items())
    }
    return schema


def cmd_config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(config_schema(args.plugin), indent=2))
    return EXIT_OK


def cmd_config_docs(args: argparse.Namespace) -> int:
    from gateway.docs import configuration_reference

    text = configuration_reference()
    if args.output:
        args.output.write_text(text)
    else:
        print(text)
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    from gateway.plugin import registered_plugins

    for name, cls in sorted(registered_plugins().items()):
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{name:24} {cls.input_kind:9} {doc[0] if doc else ''}")
    return EXIT_OK


# Areas that add their own commands: module with `register_cli(subparsers)`.
_EXTENSIONS = ("gateway.health", "gateway.inference.cli", "gateway.store.cli", "gateway.demo", "gateway.watch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-gateway",
        description="Edge AI gateway: MQTT sensor and camera streams through quantized-model pipelines, "
        "buffered locally, synced to the cloud.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "run", help="run the gateway", description="Run the gateway until SIGTERM/SIGINT, then drain and exit 0."
    )
    _config_arg(p)
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override logging.level")
    p.add_argument("--log-format", choices=["text", "json"], help="override logging.format")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "check",
        help="validate a config",
        description="Validate a config: fields, plugin options, "
        "model files (sha256 and loading), optionally broker reachability. Exit 0 if fine, 2 otherwise.",
    )
    _config_arg(p)
    p.add_argument("--broker", action="store_true", help="also check that the broker accepts TCP connections")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("config", help="config reference", description="Print the config's JSON Schema or reference.")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    s = csub.add_parser("schema", help="print the JSON Schema of the config file")
    s.add_argument("--plugin", help="print the schema of one plugin's options instead")
    s.set_defaults(func=cmd_config_schema)
    s = csub.add_parser("docs", help="print the configuration reference (Markdown) generated from the models")
    s.add_argument("-o", "--output", type=Path, help="write to this file")
    s.set_defaults(func=cmd_config_docs)

    p = sub.add_parser("plugins", help="list the registered plugins")
    p.set_defaults(func=cmd_plugins)

    for module in _EXTENSIONS:
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            log.debug("commands of %s unavailable: %s", module, e)
            continue
        register = getattr(mod, "register_cli", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_CONFIG
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
