"""Print a built wheel's requirements for a target machine, one per line (a file for ``pip install -r``).

pip evaluates environment markers against the running kernel. A 32-bit Raspberry Pi OS on a 64-bit
kernel (the default on a Pi 4 and 5) reports ``platform_machine == "aarch64"`` and would be handed the
64-bit-only dependencies (LiteRT). ``deploy/install.sh`` uses this to resolve them for ``armv7l``
instead, then installs the wheel itself with ``--no-deps``::

    python requirements_for.py WHEEL --machine armv7l --extras tflite,onnx

Runs with the target environment's own interpreter; needs nothing but pip (for its ``packaging``).
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Sequence

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
except ImportError:  # a fresh virtual environment has pip's copy only
    from pip._vendor.packaging.markers import default_environment
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment]


def wheel_requirements(wheel: str) -> list[str]:
    """The ``Requires-Dist`` lines of a wheel's metadata."""
    with zipfile.ZipFile(wheel) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = whl.read(name).decode("utf-8")
    prefix = "Requires-Dist:"
    return [line[len(prefix) :].strip() for line in metadata.splitlines() if line.startswith(prefix)]


def requirements_for(lines: Sequence[str], machine: str, extras: Sequence[str]) -> list[str]:
    """The requirements that apply on ``machine`` with ``extras``, markers removed."""
    env: dict[str, str] = {key: str(value) for key, value in default_environment().items()}
    env["platform_machine"] = machine
    out: list[str] = []
    for line in lines:
        req = Requirement(line)
        if req.marker is not None:
            if not any(req.marker.evaluate({**env, "extra": extra}) for extra in ["", *extras]):
                continue
            req.marker = None
        if str(req) not in out:
            out.append(str(req))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel")
    parser.add_argument("--machine", required=True, help="platform_machine of the target, e.g. armv7l")
    parser.add_argument("--extras", default="", help="comma-separated extras")
    args = parser.parse_args(argv)
    extras = [e for e in args.extras.split(",") if e]
    for req in requirements_for(wheel_requirements(args.wheel), args.machine, extras):
        print(req)
    return 0


if __name__ == "__main__":
    sys.exit(main())
