"""``edge-gateway models …``: list and verify the configured models; build and report the shipped ones.

``list`` and ``verify`` read the ``models`` section of the configuration (or, with ``--manifest``, the
``manifest.json`` the toolchain writes beside a set of models). ``build`` and ``report`` are the
model toolchain (``[train]`` extra) and import TensorFlow only when run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from gateway.inference.files import manifest_entry, resolve_path
from gateway.inference.model import describe
from gateway.inference.registry import ModelRegistry
from gateway.inference.spec import ModelSpec

DEFAULT_CONFIG = "config/gateway.yaml"


def specs_from_manifest(directory: Path) -> dict[str, ModelSpec]:
    """One spec per file listed in ``directory/manifest.json``, named ``<model>_<variant>``."""
    data = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    specs: dict[str, ModelSpec] = {}
    for model_name, model in data.get("models", {}).items():
        for variant, entry in model.get("variants", {}).items():
            specs[f"{model_name}_{variant}"] = ModelSpec(
                path=str(entry["file"]), sha256=entry["sha256"], version=model.get("version")
            )
    return specs


def list_models(specs: Mapping[str, ModelSpec], base_dir: Path, out: TextIO, *, as_json: bool = False) -> int:
    """Print what is declared: file, whether it exists, where its expected hash comes from."""
    rows: list[dict[str, Any]] = []
    for name in sorted(specs):
        spec = specs[name]
        path = resolve_path(spec.path, base_dir)
        entry = manifest_entry(path) if path.parent.is_dir() else None
        source = "config" if spec.sha256 else ("manifest" if entry else "none")
        rows.append(
            {
                "name": name,
                "path": str(path),
                "exists": path.is_file(),
                "sha256_from": source,
                "runtime": spec.runtime,
                "delegates": [d if isinstance(d, str) else d.label for d in spec.delegates],
                "version": spec.version or (entry.version if entry else None),
            }
        )
    if as_json:
        json.dump(rows, out, indent=2)
        out.write("\n")
    else:
        for r in rows:
            status = "ok" if r["exists"] else "MISSING"
            delegates = ",".join(r["delegates"]) or "cpu"
            out.write(
                f"{r['name']:<28} {status:<8} version={r['version'] or '-'} runtime={r['runtime']} "
                f"delegates={delegates} sha256={r['sha256_from']} {r['path']}\n"
            )
    return 0 if all(r["exists"] for r in rows) else 1


def verify_models(specs: Mapping[str, ModelSpec], base_dir: Path, out: TextIO, *, as_json: bool = False) -> int:
    """Load every model (hash checked, warmed up) and print what it runs on; exit 1 if any fails."""
    registry = ModelRegistry(specs, base_dir)
    results: list[dict[str, Any]] = []
    for name in registry.names():
        try:
            with registry.get(name) as model:
                result = describe(model) | {"ok": True}
        except Exception as exc:  # noqa: BLE001 - report every model, then fail
            result = {"name": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        results.append(result)
    if as_json:
        json.dump(results, out, indent=2)
        out.write("\n")
    else:
        for r in results:
            if r["ok"]:
                fallbacks = "; ".join(f"{f['delegate']}: {f['reason']}" for f in r["fallbacks"])
                out.write(
                    f"{r['name']:<28} OK      version={r['version']} {r['runtime']}/{r['delegate']} "
                    f"sha256={r['sha256'][:16]} inputs={[i['shape'] for i in r['inputs']]}\n"
                )
                if fallbacks:
                    out.write(f"{'':<28}         fell back: {fallbacks}\n")
            else:
                out.write(f"{r['name']:<28} FAILED  {r['error']}\n")
    return 0 if all(r["ok"] for r in results) else 1


def _specs_for(args: argparse.Namespace) -> tuple[dict[str, ModelSpec], Path]:
    if args.manifest:
        directory = Path(args.manifest)
        return specs_from_manifest(directory), directory
    from gateway.config import ConfigError, load_config  # the core's loader, imported when needed

    try:
        config = load_config(Path(args.models_config))
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    return dict(config.models), Path(config.base_dir)


def _cmd_list(args: argparse.Namespace) -> int:
    specs, base_dir = _specs_for(args)
    return list_models(specs, base_dir, sys.stdout, as_json=args.json)


def _cmd_verify(args: argparse.Namespace) -> int:
    specs, base_dir = _specs_for(args)
    return verify_models(specs, base_dir, sys.stdout, as_json=args.json)


def _cmd_build(args: argparse.Namespace) -> int:
    from gateway.toolchain.build import main_build

    return main_build(args)


def _cmd_report(args: argparse.Namespace) -> int:
    from gateway.toolchain.report import main_report

    return main_report(args)


def register_cli(subparsers: Any) -> None:
    """Add the ``models`` command and its subcommands to the gateway's argparse CLI."""
    models = subparsers.add_parser("models", help="list, verify, build and report models")
    commands = models.add_subparsers(dest="models_command", required=True)

    def source_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-c", "--config", dest="models_config", default=DEFAULT_CONFIG, help="gateway configuration file"
        )
        p.add_argument("--manifest", default=None, help="a directory with a toolchain manifest.json instead")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    p_list = commands.add_parser("list", help="show the configured models and whether their files exist")
    source_options(p_list)
    p_list.set_defaults(func=_cmd_list)

    p_verify = commands.add_parser("verify", help="load every configured model: hash, runtime, delegate")
    source_options(p_verify)
    p_verify.set_defaults(func=_cmd_verify)

    p_build = commands.add_parser("build", help="train and write every variant of the recipes' models")
    p_build.add_argument(
        "--recipe",
        action="append",
        default=None,
        help="recipe name (entry point) or module:Class; repeatable; default all",
    )
    p_build.add_argument(
        "--prune",
        type=float,
        default=None,
        metavar="SPARSITY",
        help="magnitude-prune to this sparsity (e.g. 0.5) and fine-tune",
    )
    p_build.add_argument("--distill", action="store_true", help="train a teacher, then the student on its outputs")
    p_build.add_argument("--seed", type=int, default=0)
    p_build.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    p_build.add_argument("--out", default=None, help="write into this directory instead of the recipe's")
    p_build.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip the ONNX export")
    p_build.set_defaults(func=_cmd_build)

    p_report = commands.add_parser("report", help="measure size, latency and accuracy of every variant")
    p_report.add_argument("--recipe", action="append", default=None)
    p_report.add_argument("--seed", type=int, default=0)
    p_report.add_argument("--dir", default=None, help="read models from this directory instead of the recipe's")
    p_report.add_argument("--invokes", type=int, default=500, help="timed invocations per variant and thread count")
    p_report.add_argument("--output", default="docs/models.md", help="markdown file the table is written to")
    p_report.set_defaults(func=_cmd_report)
