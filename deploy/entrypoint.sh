#!/bin/sh
# Container entrypoint: settles defaults that depend on where the container runs, then runs edge-gateway.
set -eu

# A container's host name changes with every new container, so it makes a poor gateway id (it names
# the MQTT session and every topic). On balena, use the device's UUID unless a device or fleet
# variable sets EDGE_GATEWAY_GATEWAY_ID.
if [ -z "${EDGE_GATEWAY_GATEWAY_ID:-}" ] && [ -n "${BALENA_DEVICE_UUID:-}" ]; then
    EDGE_GATEWAY_GATEWAY_ID=$BALENA_DEVICE_UUID
    export EDGE_GATEWAY_GATEWAY_ID
fi

exec edge-gateway "$@"
