"""The balena fleet files: compose in balena's supported subset, variables that are real config fields.

balena's supervisor accepts compose file format 2.x fields only (a documented subset), named volumes
only (bind mounts only through its ``io.balena.features.*`` labels), no variable interpolation, and
builds only from sub-folders of the pushed project. Every ``EDGE_GATEWAY_*`` variable the fleet files
set, or the deployment guide documents, must name a real config field: a misspelled nested variable
fails the gateway at start, a misspelled top-level one is silently ignored.
"""

from __future__ import annotations

import re
import subprocess
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from gateway.config import ENV_PREFIX, GatewayConfig, load_config

REPO = Path(__file__).resolve().parents[1]
BALENA = REPO / "deploy" / "balena"
COMPOSE = BALENA / "docker-compose.yml"

# balena's docker-compose reference: supported service fields (compose file format 2.4 subset).
SUPPORTED_SERVICE_FIELDS = {
    "build", "cap_add", "cap_drop", "cgroup_parent", "command", "cpu_shares", "cpu_quota", "cpus", "cpuset",
    "devices", "depends_on", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "environment", "expose",
    "extra_hosts", "group_add", "healthcheck", "hostname", "image", "init", "ipc", "labels", "mac_address",
    "mem_limit", "mem_reservation", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid",
    "pids_limit", "ports", "privileged", "read_only", "restart", "security_opt", "shm_size", "stop_grace_period",
    "stop_signal", "sysctls", "tmpfs", "ulimits", "user", "userns_mode", "volumes", "working_dir",
}  # fmt: skip
SUPPORTED_BUILD_FIELDS = {"context", "dockerfile", "args", "cache_from", "extra_hosts", "labels", "shm_size", "target"}
FEATURE_LABELS = {
    "io.balena.features.balena-socket", "io.balena.features.dbus", "io.balena.features.sysfs",
    "io.balena.features.procfs", "io.balena.features.kernel-modules", "io.balena.features.firmware",
    "io.balena.features.journal-logs", "io.balena.features.supervisor-api", "io.balena.features.balena-api",
    "io.balena.features.gpu",
}  # fmt: skip
UPDATE_LABELS = {"io.balena.update.strategy", "io.balena.update.handover-timeout"}
UPDATE_STRATEGIES = {"download-then-kill", "kill-then-download", "delete-then-download", "hand-over"}
NETWORK_MODES = {"bridge", "host", "none"}


def compose_problems(doc: Any) -> list[str]:
    """Everything in a compose document that balena's supervisor would reject or ignore."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        return ["the compose file is not a mapping"]
    version = str(doc.get("version", ""))
    if not re.fullmatch(r"2(\.[0-4])?", version):
        problems.append(f"version {version!r}: balena supports compose file format 2.x (up to 2.4)")
    for key in doc:
        if key not in {"version", "services", "volumes", "networks"}:
            problems.append(f"top-level {key!r} is not supported")
    named_volumes = set((doc.get("volumes") or {}).keys())
    services = doc.get("services") or {}
    if not services:
        problems.append("no services")
    for name, svc in services.items():
        where = f"services.{name}"
        for field in svc:
            if field not in SUPPORTED_SERVICE_FIELDS:
                problems.append(f"{where}.{field} is not supported by balena")
        build = svc.get("build")
        if isinstance(build, dict):
            problems += [f"{where}.build.{f} is not supported" for f in build if f not in SUPPORTED_BUILD_FIELDS]
            context = str(build.get("context", "."))
        else:
            context = str(build) if build is not None else None
        if context is not None and (context.startswith(("/", "..")) or "/../" in context or "://" in context):
            problems.append(f"{where}.build: the context must be a sub-folder of the project, not {context!r}")
        if build is None and "image" not in svc:
            problems.append(f"{where} has neither build nor image")
        for volume in svc.get("volumes") or []:
            if not isinstance(volume, str):
                problems.append(f"{where}.volumes: only the short syntax is supported")
                continue
            source = volume.split(":", 1)[0]
            if ":" not in volume or source.startswith((".", "/", "~")):
                problems.append(f"{where}.volumes: {volume!r} is a bind mount (use a feature label or a named volume)")
            elif source not in named_volumes:
                problems.append(f"{where}.volumes: {source!r} is not declared under top-level volumes")
        depends = svc.get("depends_on")
        if depends is not None and not isinstance(depends, list):
            problems.append(f"{where}.depends_on: only the list form is supported")
        mode = svc.get("network_mode")
        if mode is not None and mode not in NETWORK_MODES and not str(mode).startswith("service:"):
            problems.append(f"{where}.network_mode {mode!r} is not supported")
        labels = svc.get("labels") or {}
        if isinstance(labels, list):
            labels = dict(item.split("=", 1) for item in labels)
        for label, value in labels.items():
            if label.startswith("io.balena.features.") and label not in FEATURE_LABELS:
                problems.append(f"{where}.labels: unknown balena feature {label!r}")
            if label.startswith("io.balena.update.") and label not in UPDATE_LABELS:
                problems.append(f"{where}.labels: unknown update label {label!r}")
            if label == "io.balena.update.strategy" and value not in UPDATE_STRATEGIES:
                problems.append(f"{where}.labels: unknown update strategy {value!r}")
        for value in _strings(svc):
            if re.search(r"\$\{?[A-Za-z_]", value):
                problems.append(f"{where}: {value!r} uses variable interpolation, which balena does not do")
    return problems


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def config_field_path(variable: str) -> list[str]:
    """The config field an ``EDGE_GATEWAY_*`` variable sets, checked level by level; raises if none."""
    assert variable.startswith(ENV_PREFIX), variable
    parts = variable[len(ENV_PREFIX) :].lower().split("__")
    model: Any = GatewayConfig
    for i, part in enumerate(parts):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            raise KeyError(f"{variable}: {'.'.join(parts[: i + 1])} is not a config field")
        model = _model_in(model.model_fields[part].annotation)
    return parts


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside ``X | None`` (or the annotation itself)."""
    if isinstance(annotation, (types.UnionType,)) or typing.get_origin(annotation) is typing.Union:
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else annotation
    return annotation


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_the_compose_file_stays_within_balenas_supported_subset(compose: dict[str, Any]) -> None:
    assert compose_problems(compose) == []


def test_the_validator_rejects_what_balena_rejects() -> None:
    bad = {
        "version": "3.8",
        "services": {
            "gw": {
                "build": "../..",
                "container_name": "gw",
                "volumes": ["./data:/data", "undeclared:/x", {"type": "volume", "source": "v", "target": "/v"}],
                "depends_on": {"broker": {"condition": "service_healthy"}},
                "labels": {"io.balena.features.everything": "1", "io.balena.update.strategy": "yolo"},
                "environment": {"EDGE_GATEWAY_MQTT__HOST": "${BROKER}"},
            }
        },
        "secrets": {},
    }
    problems = "\n".join(compose_problems(bad))
    for expected in (
        "version '3.8'",
        "top-level 'secrets'",
        "container_name is not supported",
        "must be a sub-folder",
        "'./data:/data' is a bind mount",
        "'undeclared' is not declared",
        "only the short syntax",
        "depends_on: only the list form",
        "unknown balena feature",
        "unknown update strategy",
        "variable interpolation",
    ):
        assert expected in problems


def test_the_fleet_has_a_persistent_broker_and_a_gateway_with_its_own_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"mosquitto", "gateway"} <= set(services)
    assert "mosquitto-data:/mosquitto/data" in services["mosquitto"]["volumes"]
    assert "gateway-data:/data" in services["gateway"]["volumes"]
    assert services["gateway"]["depends_on"] == ["mosquitto"]
    env = environment_of(services["gateway"])
    assert env["EDGE_GATEWAY_MQTT__HOST"] == "mosquitto"
    assert env["EDGE_GATEWAY_DATA_DIR"] == "/data"
    # Two gateways must never share the SQLite store during an update.
    assert services["gateway"]["labels"]["io.balena.update.strategy"] in {"download-then-kill", "kill-then-download"}


def test_the_brokers_config_keeps_sessions_and_never_drops_qos1_at_the_default_limit() -> None:
    conf = (BALENA / "mosquitto" / "mosquitto.conf").read_text()
    settings = dict(
        line.split(None, 1) for line in conf.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )
    assert settings["persistence"] == "true"
    assert settings["persistence_location"].startswith("/mosquitto/data")
    assert int(settings["max_queued_messages"]) > 1000
    assert int(settings["max_queued_bytes"]) > 0
    assert "listener" in settings
    dockerfile = (BALENA / "mosquitto" / "Dockerfile").read_text()
    assert re.search(r"^FROM eclipse-mosquitto:2\.\d+\.\d+$", dockerfile, re.M), "pin the broker image to a release"


def _documented_variables() -> set[str]:
    doc = REPO / "docs" / "deployment.md"
    return set(re.findall(r"\b(EDGE_GATEWAY_[A-Z0-9_]+)\b", doc.read_text())) if doc.exists() else set()


def _balena_yml_variables() -> dict[str, str]:
    data = yaml.safe_load((BALENA / "balena.yml").read_text())["data"]
    return {str(k): str(v) for item in data.get("applicationEnvironmentVariables", []) for k, v in item.items()}


def test_every_variable_the_fleet_sets_or_the_guide_documents_is_a_config_field(compose: dict[str, Any]) -> None:
    variables = set(_balena_yml_variables()) | _documented_variables()
    plain = yaml.safe_load((REPO / "deploy" / "docker" / "compose.yaml").read_text())  # plain Docker Compose
    for svc in [*compose["services"].values(), *plain["services"].values()]:
        variables |= {k for k in environment_of(svc) if k.startswith(ENV_PREFIX)}
    assert len(variables) >= 5
    unknown = []
    for variable in sorted(variables):
        try:
            config_field_path(variable)
        except KeyError as e:
            unknown.append(str(e))
    assert unknown == []


def test_a_misspelled_variable_is_caught() -> None:
    with pytest.raises(KeyError, match="mqtt.hots"):
        config_field_path("EDGE_GATEWAY_MQTT__HOTS")
    with pytest.raises(KeyError, match="gatway_id"):
        config_field_path("EDGE_GATEWAY_GATWAY_ID")
    assert config_field_path("EDGE_GATEWAY_CLOUD__MQTT__PASSWORD_FILE") == ["cloud", "mqtt", "password_file"]


def _set(cfg: Any, path: list[str]) -> Any:
    for part in path:
        cfg = getattr(cfg, part)
    return cfg


def test_the_gateway_loads_with_the_fleets_variables_and_they_take_effect(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("gateway_id: site-1\nmqtt:\n  host: localhost\n")
    env = environment_of(compose["services"]["gateway"]) | _balena_yml_variables()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cfg = load_config(config)
    for key, value in env.items():
        got = _set(cfg, config_field_path(key))
        assert str(got) == value or str(got).lower() == value.lower() or float(got) == float(value), key
    assert cfg.mqtt.host == "mosquitto"


def test_documented_cloud_variables_configure_the_cloud_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("gateway_id: site-1\n")
    monkeypatch.setenv("EDGE_GATEWAY_CLOUD__ENABLED", "true")
    monkeypatch.setenv("EDGE_GATEWAY_CLOUD__MQTT__HOST", "broker.example.net")
    monkeypatch.setenv("EDGE_GATEWAY_CLOUD__MQTT__USERNAME", "site-1")
    monkeypatch.setenv("EDGE_GATEWAY_CLOUD__MQTT__PASSWORD", "s3cret")
    cfg = load_config(config)
    assert cfg.cloud.enabled and cfg.cloud.mqtt is not None
    assert cfg.cloud.mqtt.host == "broker.example.net" and cfg.cloud.mqtt.port == 8883
    assert cfg.cloud.mqtt.resolved_password() == "s3cret"


def test_balena_yml_names_the_supported_device_types() -> None:
    meta = yaml.safe_load((BALENA / "balena.yml").read_text())
    assert meta["type"] == "sw.application"
    types_ = meta["data"]["supportedDeviceTypes"]
    assert {"raspberrypi4-64", "raspberrypi5"} <= set(types_)
    assert any(t.startswith("jetson-") for t in types_)
    assert meta["data"]["defaultDeviceType"] in types_


def test_the_staged_project_has_everything_balena_builds_from(tmp_path: Path) -> None:
    out = tmp_path / "project"
    run = subprocess.run(["sh", str(BALENA / "push.sh"), "--stage-only", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    staged = yaml.safe_load((out / "docker-compose.yml").read_text())
    for name, svc in staged["services"].items():
        build = svc["build"]
        context = out / (build["context"] if isinstance(build, dict) else build)
        dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        assert dockerfile.is_file(), f"{name}: no {dockerfile}"
        for line in dockerfile.read_text().splitlines():
            m = re.match(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", line)
            if m:
                for src in m.group(1).split():
                    if "$" not in src:
                        assert (context / src).exists(), f"{name}: {src} is missing from the build context"
    jetson = [p.name for p in (out / "gateway").glob("Dockerfile.jetson-*")]
    meta = yaml.safe_load((out / "balena.yml").read_text())
    assert sorted(jetson) == sorted(f"Dockerfile.{t}" for t in meta["data"]["supportedDeviceTypes"] if "jetson" in t)
