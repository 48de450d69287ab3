"""The configuration reference (Markdown), generated from the config models' JSON Schema.

``edge-gateway config docs -o docs/configuration.md`` writes it; a test keeps the committed file in step
with the models.
"""

from __future__ import annotations

import json
from typing import Any

ENV_NOTE = (
    "Every field can be overridden from the environment: `EDGE_GATEWAY_` + the path in upper case with `__` "
    "between levels, e.g. `EDGE_GATEWAY_MQTT__HOST=broker.local`, `EDGE_GATEWAY_MQTT__PASSWORD_FILE=/run/secrets/mqtt`. "
    'Lists and mappings take JSON (`EDGE_GATEWAY_MQTT__TLS=\'{"ca_file": "/certs/ca.pem"}\'`). '
    "Relative paths are relative to the config file's directory."
)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return f"[{_ref_name(prop['$ref'])}](#{_ref_name(prop['$ref']).lower()})"
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " | ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "anyOf" in prop or "oneOf" in prop:
        parts = [_type(p) for p in prop.get("anyOf", prop.get("oneOf", []))]
        return " | ".join(dict.fromkeys(parts))
    t = prop.get("type")
    if t == "array":
        return f"list of {_type(prop.get('items', {}))}"
    if t == "object":
        extra = prop.get("additionalProperties")
        return f"mapping of {_type(extra)}" if isinstance(extra, dict) and extra else "mapping"
    if t == "string" and prop.get("format") == "path":
        return "path"
    if t == "string" and prop.get("format") == "password":
        return "secret"
    return str(t or "any")


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in prop:
        return ""
    d = prop["default"]
    if d is None or d == {} or d == []:
        return "" if d is None else f"`{json.dumps(d)}`"
    text = json.dumps(d)
    return f"`{text}`" if len(text) <= 40 else "see schema"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        desc = prop.get("description", "")
        title = prop.get("title", "")
        text = f"**{title}.** {desc}" if title and title.lower() != name.replace("_", " ") else desc
        rows.append(f"| `{name}` | {_cell(_type(prop))} | {_cell(_default(prop, name in required))} | {_cell(text)} |")
    return rows


def _section(title: str, schema: dict[str, Any], level: int = 3) -> list[str]:
    out = [f"{'#' * level} {title}", ""]
    if schema.get("description"):
        out += [schema["description"].strip(), ""]
    out += _table(schema)
    out.append("")
    return out


def configuration_reference() -> str:
    """The whole reference: top level, every section, every plugin's options."""
    from gateway.cli import config_schema

    schema = config_schema()
    defs: dict[str, Any] = schema.get("$defs", {})
    lines = [
        "# Configuration reference",
        "",
        "Generated from the config models by `edge-gateway config docs` (do not edit by hand). The JSON Schema "
        "itself: `edge-gateway config schema`. Check a file with `edge-gateway check -c FILE`.",
        "",
        ENV_NOTE,
        "",
        "## Top level",
        "",
        *_table(schema),
        "",
        "## Sections",
        "",
    ]
    for name in sorted(defs):
        lines += _section(name, defs[name])
    lines += ["## Plugin options", "", "The `options:` of a pipeline, by its `plugin:`.", ""]
    for plugin, pschema in schema.get("x-plugin-options", {}).items():
        lines += _section(f"`{plugin}`", pschema)
        for name in sorted(pschema.get("$defs", {})):
            lines += _section(f"{plugin}: {name}", pschema["$defs"][name], level=4)
    return "\n".join(lines).rstrip() + "\n"
