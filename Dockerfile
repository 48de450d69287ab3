# Edge AI gateway image for linux/amd64, linux/arm64 and linux/arm/v7 (the 32-bit tflite-runtime path).
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t edge-ai-gateway:0.1.0 .
#   docker build --target edgetpu -t edge-ai-gateway:0.1.0-edgetpu .    # adds libedgetpu (Coral Edge TPU)
#
# Build arguments:
#   PYTHON_VERSION   3.11 (default) or 3.12; use 3.11 for linux/arm/v7 (tflite-runtime has no 3.12 wheels)
#   EXTRAS           optional features of the package, comma separated, e.g. "onnx"
#
# Everything is installed from wheels at build time (deploy/install.sh, the same script CI runs);
# models ship inside the package, so nothing is downloaded when the container starts.
# See docs/deployment.md.

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

# ---- build: the gateway and its dependencies in a virtual environment ---------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY plugins ./plugins
COPY deploy/install.sh deploy/requirements_for.py ./deploy/
RUN EXTRAS="${EXTRAS}" sh deploy/install.sh /opt/edge-gateway \
    && /opt/edge-gateway/bin/python -m compileall -q /opt/edge-gateway/lib

# ---- runtime: the CPU image -------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime
ARG TARGETARCH
LABEL org.opencontainers.image.title="edge-ai-gateway" \
      org.opencontainers.image.description="MQTT sensor and camera streams through quantized-model pipelines, buffered offline, synced to the cloud" \
      org.opencontainers.image.licenses="Apache-2.0"

# numpy for 32-bit Arm comes from piwheels, built against Debian's OpenBLAS.
# DL3008: packages come from the Debian release the base image is pinned to; pinning exact Debian
# revisions would break every rebuild after a security update without making the image more reproducible.
# hadolint ignore=DL3008
RUN if [ "${TARGETARCH}" = "arm" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends libopenblas0-pthread \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# A fixed, unprivileged user; `video` (44) and `plugdev` (46) have the same ids as on Debian and
# Raspberry Pi OS hosts, so cameras and a USB Edge TPU passed in with --device are usable.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --groups video,plugdev \
        --home-dir /data --no-create-home --shell /usr/sbin/nologin gateway \
    && mkdir -p /data /config \
    && chown gateway:gateway /data

COPY --from=build /opt/edge-gateway /opt/edge-gateway
# The config folder (gateway.yaml, other configs, models they name by relative path) becomes /config.
COPY config/ /config/
COPY deploy/entrypoint.sh /usr/local/bin/edge-gateway-entrypoint

ENV PATH=/opt/edge-gateway/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    EDGE_GATEWAY_DATA_DIR=/data \
    EDGE_GATEWAY_LOGGING__FORMAT=json

VOLUME ["/data"]
WORKDIR /data
USER 10001

# Healthy while the gateway keeps rewriting /data/health.json (at every metrics interval) with its MQTT
# link up and every pipeline worker alive; see `edge-gateway health --help`.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-I", "-m", "gateway.health"]

# SIGTERM makes the gateway drain its queues (drain_timeout_s) and publish `offline` before exiting.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/bin/sh", "/usr/local/bin/edge-gateway-entrypoint"]
CMD ["run", "--config", "/config/gateway.yaml"]

# ---- edgetpu: the CPU image plus libedgetpu from Coral's apt repository --------------------------------
FROM runtime AS edgetpu
ARG LIBEDGETPU=libedgetpu1-std
ARG LIBEDGETPU_VERSION=16.0
USER 0
# The repository key (ASCII-armoured, hence .asc for apt) comes over HTTPS from the package host;
# apt then checks every package against it.
ADD https://packages.cloud.google.com/apt/doc/apt-key.gpg /usr/share/keyrings/coral-edgetpu.asc
RUN chmod 0644 /usr/share/keyrings/coral-edgetpu.asc \
    && echo "deb [signed-by=/usr/share/keyrings/coral-edgetpu.asc] https://packages.cloud.google.com/apt coral-edgetpu-stable main" \
        > /etc/apt/sources.list.d/coral-edgetpu.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends "${LIBEDGETPU}=${LIBEDGETPU_VERSION}" \
    && rm -rf /var/lib/apt/lists/*
USER 10001

# ---- default target: the CPU image --------------------------------------------------------------------
FROM runtime AS cpu
