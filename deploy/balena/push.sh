#!/bin/sh
# Assemble the balena project and push it to a fleet (or, with --stage-only DIR, just assemble it).
#
#     deploy/balena/push.sh <fleet>                 # balena push <fleet> with the gateway built from this checkout
#     deploy/balena/push.sh --stage-only /tmp/bp    # write the project to /tmp/bp (tests use this)
#
# balena builds only from sub-folders of the pushed directory, so the gateway's build context (the
# files the root Dockerfile copies) is placed in ./gateway next to docker-compose.yml. The Jetson
# Dockerfile goes in as Dockerfile.<device type>, which balena picks for those device types.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${1:-}" = "--stage-only" ]; then
    OUT=${2:?usage: push.sh --stage-only DIR}
    FLEET=
else
    FLEET=${1:?usage: push.sh FLEET | push.sh --stage-only DIR}
    OUT=$(mktemp -d)
    trap 'rm -rf "$OUT"' EXIT
fi

mkdir -p "$OUT/gateway/deploy"
cp "$ROOT/deploy/balena/docker-compose.yml" "$ROOT/deploy/balena/balena.yml" "$OUT/"
cp -R "$ROOT/deploy/balena/mosquitto" "$OUT/"
cp "$ROOT/Dockerfile" "$ROOT/.dockerignore" "$ROOT/pyproject.toml" "$ROOT/README.md" "$OUT/gateway/"
cp -R "$ROOT/gateway" "$ROOT/plugins" "$ROOT/config" "$OUT/gateway/"
cp "$ROOT/deploy/install.sh" "$ROOT/deploy/requirements_for.py" "$ROOT/deploy/entrypoint.sh" "$OUT/gateway/deploy/"
for device in jetson-orin-nano-devkit-nvme jetson-agx-orin-devkit; do
    cp "$ROOT/deploy/jetson/Dockerfile" "$OUT/gateway/Dockerfile.$device"
done
find "$OUT" -name __pycache__ -type d -prune -exec rm -rf {} +

if [ -n "$FLEET" ]; then
    balena push "$FLEET" --source "$OUT"
else
    echo "balena project written to $OUT"
fi
