#!/usr/bin/env bash
# Set up and run the demo on a fresh machine:
#   - installs Mosquitto with apt-get when it is missing and we may (root or sudo),
#   - creates .venv and installs the gateway into it,
#   - runs `edge-gateway demo`: a local broker if none is running, the gateway with config/demo.yaml,
#     simulated camera and sensors, and the live view. Ctrl-C stops everything.
# Extra arguments go to `edge-gateway demo` (e.g. --duration 120).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "demo: installing mosquitto (apt-get)"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto
  else
    echo "demo: please install mosquitto (the MQTT broker) with your package manager" >&2
  fi
fi

VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c "import gateway" 2>/dev/null || [ pyproject.toml -nt "$VENV/.installed-demo" ]; then
  echo "demo: installing the gateway into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e .
  touch "$VENV/.installed-demo"
fi
exec "$VENV/bin/edge-gateway" demo -c config/demo.yaml "$@"
