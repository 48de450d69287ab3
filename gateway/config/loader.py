"""Loading the YAML config: sources, plugin options, and errors that name the field and the file."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, YamlConfigSettingsSource

from gateway.config.models import GatewayConfig
from gateway.plugin import UnknownPluginError, plugin_class

_yaml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar("gateway_config_yaml", default=None)
_SECRET_WORDS = ("password", "secret", "token", "key")


def yaml_source(settings_cls: type[BaseSettings]) -> PydanticBaseSettingsSource | None:
    """The YAML source for the file being loaded, if any (pydantic-settings ignores ``yaml_file`` alone)."""
    path = _yaml_path.get()
    return None if path is None else YamlConfigSettingsSource(settings_cls, yaml_file=path)


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config: where (``pipelines[2].options.lines[0].points``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ValueError):
    """The config cannot be used; ``problems`` lists every field that is wrong."""

    def __init__(self, file: Path | None, problems: Sequence[ConfigProblem]) -> None:
        self.file = file
        self.problems = list(problems)
        where = f"{file}" if file else "config"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{where}: {len(self.problems)} problem(s)\n{lines}")


def format_loc(loc: Iterable[int | str]) -> str:
    """A pydantic error location as a path: ``pipelines[2].options.lines[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or "(" in part:  # union/validator tags such as 'function-after[...]'
            continue
        else:
            out += f".{part}" if out else part
    return out


def _problems(err: ValidationError, prefix: str = "") -> list[ConfigProblem]:
    problems = []
    for e in err.errors(include_url=False):
        path = format_loc(e["loc"])
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        msg = e["msg"]
        secret = any(w in path.lower() for w in _SECRET_WORDS)
        if e["type"] not in ("missing", "extra_forbidden") and not secret and "input" in e:
            shown = repr(e["input"])
            msg += f" (got {shown[:80]}{'...' if len(shown) > 80 else ''})"
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; `edge-gateway config schema` lists the fields)"
        problems.append(ConfigProblem(path, msg))
    return problems


def _read_yaml(path: Path) -> Any:
    """Fail early, with the line, on YAML syntax errors and on a top level that is not a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(path, [ConfigProblem("", f"cannot read the file: {e.strerror or e}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(path, [ConfigProblem("", f"invalid YAML: {where}{problem}")]) from None
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(path, [ConfigProblem("", "the top level must be a mapping of sections")])
    return data


def _plugin_problems(pipelines: Sequence[tuple[int, str, Any, bool]], into: dict[str, Any]) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for i, plugin, options, name in pipelines:  # (index, plugin name, raw options, pipeline name)
        try:
            cls = plugin_class(plugin)
        except UnknownPluginError as e:
            problems.append(ConfigProblem(f"pipelines[{i}].plugin", str(e)))
            continue
        try:
            into[str(name)] = cls.options_model.model_validate(options)
        except ValidationError as e:
            problems.extend(_problems(e, f"pipelines[{i}].options"))
    return problems


def validate_plugin_options(cfg: GatewayConfig) -> list[ConfigProblem]:
    """Validate each enabled pipeline's options with its plugin's model; store the results on ``cfg``."""
    todo = [(i, p.plugin, p.options, p.name) for i, p in enumerate(cfg.pipelines) if p.enabled]
    return _plugin_problems(todo, cfg._plugin_options)


def _raw_plugin_problems(data: Any) -> list[ConfigProblem]:
    """Plugin option problems found in the raw YAML, reported with the other problems when the file is invalid."""
    pipelines = data.get("pipelines") if isinstance(data, Mapping) else None
    if not isinstance(pipelines, list):
        return []
    todo = [
        (i, p["plugin"], p.get("options") or {}, p.get("name", i))
        for i, p in enumerate(pipelines)
        if isinstance(p, Mapping)
        and isinstance(p.get("plugin"), str)
        and p.get("enabled", True) is not False
        and isinstance(p.get("options") or {}, Mapping)
    ]
    return _plugin_problems(todo, {})


def load_config(path: Path | str | None, **overrides: Any) -> GatewayConfig:
    """Load and fully validate a config file (environment overrides applied).

    Raises :class:`ConfigError` listing every problem with its field path and the file.
    """
    file = Path(path) if path is not None else None
    data = _read_yaml(file) if file is not None else None
    token = _yaml_path.set(file)
    try:
        cfg = GatewayConfig(**overrides)
    except ValidationError as e:
        problems = _problems(e)
        known = {p.path for p in problems}
        problems += [p for p in _raw_plugin_problems(data) if p.path not in known]
        raise ConfigError(file, problems) from None
    finally:
        _yaml_path.reset(token)
    if file is not None:
        cfg._base_dir = file.resolve().parent
    problems = validate_plugin_options(cfg)
    if problems:
        raise ConfigError(file, problems)
    return cfg
