#!/usr/bin/env bash
# Run the test suite in the project's virtual environment (created on first use).
#   scripts/test.sh [pytest args...]
# EXTRAS=test,train also installs TensorFlow so the model toolchain's tests run (CI does).
# Needs python3 (3.10+) with venv, and mosquitto for the broker tests (Debian: apt-get install mosquitto).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
EXTRAS="${EXTRAS:-test}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import gateway, pytest, jsonschema" 2>/dev/null || [ pyproject.toml -nt "$VENV/.installed" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS]"
  touch "$VENV/.installed"
fi
exec "$VENV/bin/python" -m pytest "$@"
