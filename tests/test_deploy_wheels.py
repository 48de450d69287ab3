"""The dependency set resolves to binary wheels for the boards the gateway is flashed onto.

64-bit Arm (Raspberry Pi OS 64-bit, Jetson, balena on Pi 4/5) on Python 3.10 (Jetson's L4T r36), 3.11
and 3.12: everything must come as a wheel from PyPI, so nothing compiles on a Pi. 32-bit Arm (Raspberry Pi OS armhf) on
Python 3.11 takes the ``tflite`` extra: tflite-runtime with numpy<2 and opencv-python-headless<4.12.
PyPI has no 32-bit Arm wheels of numpy, OpenCV or PyYAML, which Raspberry Pi OS gets from piwheels
(configured there by default); piwheels cannot be reached from CI, so those three stand in as
metadata-only wheels and everything else, pins included, must resolve from PyPI.

The tests marked ``network`` download from PyPI (a pip cache makes reruns quick); deselect them with
``-m "not network"``. The 32-bit requirements come from the built wheel through
``deploy/requirements_for.py``, exactly as ``deploy/install.sh`` computes them on a Pi.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]


def _load_requirements_for() -> types.ModuleType:
    """deploy/requirements_for.py, the script deploy/install.sh runs on 32-bit Arm."""
    spec = importlib.util.spec_from_file_location("requirements_for", REPO / "deploy" / "requirements_for.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_script = _load_requirements_for()
requirements_for = _script.requirements_for
wheel_requirements = _script.wheel_requirements

network = pytest.mark.network

# Debian bookworm (Raspberry Pi OS, the python:*-slim images) has glibc 2.36; L4T r36 (Ubuntu 22.04) 2.35.
GLIBC_MINORS = range(17, 37)
# Packages Raspberry Pi OS armhf installs from piwheels, with versions piwheels builds for Python 3.11.
PIWHEELS_ONLY = {"numpy": "1.26.4", "opencv-python-headless": "4.11.0.86", "pyyaml": "6.0.2"}


def _platforms(arch: str) -> list[str]:
    tags = [f"manylinux_2_{minor}_{arch}" for minor in GLIBC_MINORS] + [f"manylinux2014_{arch}", f"linux_{arch}"]
    return [arg for tag in tags for arg in ("--platform", tag)]


def requirements(machine: str, python: str, extras: tuple[str, ...]) -> list[str]:
    """The project's requirements (with ``extras``) for a target machine, markers evaluated for it."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = {
        "platform_machine": machine,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    out = []
    for line in lines:
        req = Requirement(line)
        if req.marker is None or Marker(str(req.marker)).evaluate(env):
            req.marker = None
            out.append(str(req))
    return out


def pip_download(dest: Path, platforms: list[str], python: str, reqs: list[str], *extra: str) -> None:
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
        *platforms, "--dest", str(dest), *extra, *reqs,
    ]  # fmt: skip
    env = dict(os.environ, PIP_PROGRESS_BAR="off")
    env.pop("PIP_FIND_LINKS", None)  # only PyPI (and the stand-ins below) count
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, f"no binary wheels for:\n{run.stderr[-3000:]}"


def downloaded(dest: Path) -> dict[str, str]:
    """Wheels in ``dest`` by project name: {name: file name}."""
    assert not [p.name for p in dest.iterdir() if not p.name.endswith(".whl")], "an sdist slipped in"
    return {canonicalize_name(p.name.split("-")[0]): p.name for p in dest.glob("*.whl")}


# 3.10: Jetson (L4T r36, Ubuntu 22.04); 3.11: Raspberry Pi OS bookworm and the images; 3.12: newer distributions.
@network
@pytest.mark.parametrize("python", ["3.10", "3.11", "3.12"])
def test_64_bit_arm_resolves_to_wheels_only(python: str, tmp_path: Path) -> None:
    reqs = requirements("aarch64", python, extras=("onnx",))
    assert any(r.startswith("ai-edge-litert") for r in reqs)
    pip_download(tmp_path, _platforms("aarch64"), python, reqs)
    wheels = downloaded(tmp_path)
    for name in ("ai-edge-litert", "numpy", "opencv-python-headless", "pydantic-core", "onnxruntime", "paho-mqtt"):
        assert name in wheels
    abi = "cp" + python.replace(".", "")
    assert abi in wheels["ai-edge-litert"] and "aarch64" in wheels["ai-edge-litert"]
    assert wheels["numpy"].split("-")[1].split(".")[0] == "2"  # LiteRT's numpy 2


def _stand_in_wheel(dest: Path, name: str, version: str) -> None:
    """A metadata-only wheel for a package Raspberry Pi OS installs from piwheels."""
    dist = f"{name.replace('-', '_')}-{version}"
    with zipfile.ZipFile(dest / f"{dist}-cp311-cp311-linux_armv7l.whl", "w") as whl:
        whl.writestr(f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(
            f"{dist}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: stand-in\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_armv7l\n",
        )
        whl.writestr(f"{dist}.dist-info/RECORD", "")


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The project's wheel, built as deploy/install.sh builds it (without network: no build isolation)."""
    pytest.importorskip("setuptools")
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for part in ("pyproject.toml", "README.md", "gateway", "plugins"):
        if not (REPO / part).exists():
            pytest.skip(f"{part} is missing from the checkout")
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy)(REPO / part, src / part)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(work / "w"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    yield next((work / "w").glob("edge_ai_gateway-*.whl"))


def test_a_32_bit_userland_gets_tflite_runtime_whatever_the_kernel_says(built_wheel: Path) -> None:
    lines = wheel_requirements(str(built_wheel))
    arm32 = requirements_for(lines, "armv7l", ["tflite"])
    assert not any(r.startswith("ai-edge-litert") for r in arm32)
    assert {"tflite-runtime>=2.14", "numpy<2", "opencv-python-headless<4.12"} <= set(arm32)
    # The same package on a 64-bit userland gets LiteRT and no tflite-runtime.
    arm64 = requirements_for(lines, "aarch64", [])
    assert any(r.startswith("ai-edge-litert") for r in arm64)
    assert not any(r.startswith("tflite-runtime") for r in arm64)
    # What install.sh computes from the wheel is what pyproject.toml declares.
    assert sorted(arm32) == sorted(requirements("armv7l", "3.11", extras=("tflite",)))


@network
def test_32_bit_arm_resolves_with_its_pins(built_wheel: Path, tmp_path: Path) -> None:
    reqs = requirements_for(wheel_requirements(str(built_wheel)), "armv7l", ["tflite"])
    piwheels = tmp_path / "piwheels"
    piwheels.mkdir()
    for name, version in PIWHEELS_ONLY.items():
        _stand_in_wheel(piwheels, name, version)
    dest = tmp_path / "wheels"
    pip_download(dest, _platforms("armv7l"), "3.11", reqs, "--find-links", str(piwheels))
    wheels = downloaded(dest)
    assert "tflite-runtime" in wheels and "armv7l" in wheels["tflite-runtime"]
    assert "pydantic-core" in wheels and "armv7l" in wheels["pydantic-core"]
    # The pins hold together: the stand-ins (numpy 1.x, OpenCV 4.11) satisfy tflite-runtime too.
    for name, version in PIWHEELS_ONLY.items():
        assert wheels[name].split("-")[1] == version.replace("-", "_")
