#!/bin/sh
# Install the gateway into a virtual environment, from binary wheels only (nothing compiles on the device).
#
# The Dockerfile runs this script as its install step, CI runs it in a fresh virtual environment
# (scripts/check-deploy.sh), and it is the install step of a plain Raspberry Pi OS / Debian host:
#
#     sudo sh deploy/install.sh /opt/edge-gateway
#
# Arguments:  VENV_DIR   where the virtual environment is created (it may exist already: upgrade)
# Environment:
#   PYTHON    interpreter that creates the environment (default: python3; 3.10 or newer)
#   SOURCE    the project to install: a checkout directory or a built wheel (default: this checkout)
#   EXTRAS    optional features, comma separated, e.g. "onnx" (the inference runtime is picked below)
#
# Inference runtime by CPU: x86_64 and aarch64 get ai-edge-litert (a plain dependency of the
# package). A 32-bit Arm interpreter gets the `tflite` extra: tflite-runtime with numpy<2 and
# opencv-python-headless<4.12. PyPI has no 32-bit Arm wheels of numpy, OpenCV or PyYAML; piwheels has
# them, so the piwheels index is added there (Raspberry Pi OS has it configured already).
set -eu

VENV=${1:?usage: install.sh VENV_DIR}
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
SOURCE=${SOURCE:-$HERE}
EXTRAS=${EXTRAS:-}

machine=$("$PYTHON" -c 'import platform; print(platform.machine().lower())')
bits=$("$PYTHON" -c 'import struct; print(8 * struct.calcsize("P"))')
arm32=no
case "$machine" in
    # A 32-bit Raspberry Pi OS on a 64-bit kernel (the default on a Pi 4 and 5) says aarch64: the
    # interpreter's pointer size tells the truth.
    arm* | aarch64)
        if [ "$bits" = 32 ]; then
            arm32=yes
            machine=armv7l
            EXTRAS="tflite${EXTRAS:+,$EXTRAS}"
            PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL:-https://www.piwheels.org/simple}
            export PIP_EXTRA_INDEX_URL
        fi
        ;;
esac

"$PYTHON" -m venv "$VENV"
pip="$VENV/bin/python -m pip"

case "$SOURCE" in
    *.whl)
        wheel=$SOURCE
        ;;
    *)
        # The project itself is pure Python: build its wheel (setuptools comes as a wheel too), from a
        # copy of the sources so the build leaves nothing behind in the checkout.
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        mkdir "$work/src"
        for part in pyproject.toml README.md gateway plugins; do
            cp -R "$SOURCE/$part" "$work/src/"
        done
        $pip wheel --quiet --no-deps --only-binary=:all: --wheel-dir "$work/wheels" "$work/src"
        wheel=$(ls "$work"/wheels/edge_ai_gateway-*.whl)
        ;;
esac

# --only-binary: a missing wheel is an error here, never a half-hour compile on a Pi.
if [ "$arm32" = yes ]; then
    # pip would read the package's markers with the kernel's machine name (aarch64 on a 64-bit kernel)
    # and ask for LiteRT: resolve the requirements for armv7l instead, then add the wheel alone.
    # A recent pip also knows that an armv8l userland runs armv7l wheels.
    $pip install --progress-bar off --upgrade pip
    requirements=$(mktemp)
    "$VENV/bin/python" "$HERE/deploy/requirements_for.py" "$wheel" --machine armv7l --extras "$EXTRAS" > "$requirements"
    $pip install --progress-bar off --only-binary=:all: -r "$requirements"
    $pip install --progress-bar off --no-deps "$wheel"
    rm -f "$requirements"
else
    $pip install --progress-bar off --only-binary=:all: "$wheel${EXTRAS:+[$EXTRAS]}"
fi

"$VENV/bin/edge-gateway" --version
echo "installed into $VENV ($machine, $bits-bit${EXTRAS:+, extras: $EXTRAS})"
