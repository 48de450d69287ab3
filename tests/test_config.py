"""Config loading: every kind of bad config names the field path and the file; env overrides; secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import check_config, config_schema, main
from gateway.config import ConfigError, load_config


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gateway.yaml"
    p.write_text(text)
    return p


GOOD = """
gateway_id: gw1
mqtt: {host: 127.0.0.1, port: 1883}
pipelines:
  - name: pass
    plugin: passthrough
    inputs: ["sensors/#"]
    options: {emit: event}
"""


def test_good_config_loads_with_plugin_options_validated(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.gateway_id == "gw1"
    assert cfg.topic_prefix == "edge/gw1"
    assert cfg.plugin_options("pass").emit == "event"
    assert cfg.base_dir == tmp_path.resolve()


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ("mqtt: {port: 99999}", "mqtt.port", "less than or equal"),
        ("mqtt: {prot: 5}", "mqtt.prot", "unknown field"),
        ("mqtt: {shared_group: 'a/b'}", "mqtt.shared_group", "letters"),
        ("pipelines: [{name: p, plugin: nope}]", "pipelines[0].plugin", "unknown plugin 'nope'"),
        ("pipelines: [{name: p, plugin: passthrough, options: {emit: all}}]", "pipelines[0].options.emit", "pattern"),
        (
            "pipelines: [{name: p, plugin: passthrough, options: {typo: 1}}]",
            "pipelines[0].options.typo",
            "unknown field",
        ),
        ("pipelines: [{name: p, plugin: passthrough, inputs: ['a/#/b']}]", "pipelines[0].inputs", "'#'"),
        ("pipelines: [{plugin: passthrough}]", "pipelines[0].name", "Field required"),
        (
            "pipelines: [{name: p, plugin: passthrough}, {name: p, plugin: passthrough}]",
            "",
            "used twice",
        ),
        ("mqtt: {tls: {cert_file: c.pem}}", "mqtt.tls", "go together"),
        ("gateway_id: 'has space'", "gateway_id", "letters"),
    ],
)
def test_bad_config_names_the_field_and_the_file(tmp_path: Path, text: str, path: str, words: str) -> None:
    file = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(file)
    err = info.value
    assert err.file == file
    assert any(p.path == path and words in p.message for p in err.problems), err.problems
    assert str(file) in str(err)


def test_structural_and_plugin_errors_are_reported_together(tmp_path: Path) -> None:
    file = _write(tmp_path, "mqtt: {port: 0}\npipelines: [{name: p, plugin: passthrough, options: {emit: x}}]")
    with pytest.raises(ConfigError) as info:
        load_config(file)
    paths = {p.path for p in info.value.problems}
    assert {"mqtt.port", "pipelines[0].options.emit"} <= paths


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    file = _write(tmp_path, "mqtt:\n  host: [unclosed\n")
    with pytest.raises(ConfigError, match=r"invalid YAML: line \d+"):
        load_config(file)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_environment_overrides_nested_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_GATEWAY_MQTT__HOST", "broker.local")
    monkeypatch.setenv("EDGE_GATEWAY_MQTT__PORT", "8883")
    monkeypatch.setenv("EDGE_GATEWAY_GATEWAY_ID", "from-env")
    cfg = load_config(_write(tmp_path, GOOD))
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.gateway_id) == ("broker.local", 8883, "from-env")
    assert cfg.plugin_options("pass").emit == "event"  # the rest still comes from the file


def test_bad_environment_value_is_reported_with_its_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_GATEWAY_MQTT__PORT", "not-a-port")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, GOOD))
    assert any(p.path == "mqtt.port" for p in info.value.problems)


def test_password_from_file_and_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cr3t-value\n")
    cfg = load_config(_write(tmp_path, f"mqtt: {{username: u, password_file: {secret}}}"))
    assert cfg.mqtt.resolved_password() == "s3cr3t-value"
    monkeypatch.setenv("EDGE_GATEWAY_MQTT__PASSWORD", "env-secret")
    with pytest.raises(ConfigError) as info:  # both given: an error that does not echo the secret
        load_config(_write(tmp_path, f"mqtt: {{username: u, password_file: {secret}}}"))
    assert "env-secret" not in str(info.value)
    monkeypatch.delenv("EDGE_GATEWAY_MQTT__PASSWORD")
    cfg = load_config(_write(tmp_path, "mqtt: {username: u, password: hunter2}"))
    assert "hunter2" not in repr(cfg) and "hunter2" not in cfg.model_dump_json()


def test_check_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, GOOD)
    assert main(["check", "-c", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelines: [{name: p, plugin: passthrough, options: {emit: x}}]")
    assert main(["check", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "pipelines[0].options.emit" in err and str(bad) in err


def test_check_reports_unreachable_broker(tmp_path: Path) -> None:
    from gateway.broker import free_port

    file = _write(tmp_path, f"mqtt: {{host: 127.0.0.1, port: {free_port()}}}")
    problems = check_config(file, broker=True, timeout=1.0)
    assert len(problems) == 1 and "not reachable" in problems[0]


def test_check_refuses_a_model_whose_file_is_missing(tmp_path: Path) -> None:
    file = _write(tmp_path, "models: {det: {path: missing.tflite}}")
    problems = check_config(file)
    assert problems and "models.det" in problems[0]


def test_schema_documents_every_field() -> None:
    schema = config_schema()
    assert schema["additionalProperties"] is False
    missing = []

    def walk(node: dict, where: str) -> None:
        for name, prop in node.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{where}.{name}")

    walk(schema, "root")
    for name, d in schema.get("$defs", {}).items():
        walk(d, name)
    assert not missing, f"fields without a description: {missing}"
    assert "passthrough" in schema["x-plugin-options"]


def test_cli_entry_points_work_as_processes(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "config", "schema"], capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout)["title"] == "GatewayConfig"
    for cmd in (["--help"], ["run", "--help"], ["check", "--help"], ["config", "schema", "--help"]):
        r = subprocess.run([sys.executable, "-m", "gateway", *cmd], capture_output=True, text=True)
        assert r.returncode == 0 and "usage:" in r.stdout
