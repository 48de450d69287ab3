"""Configuration: the models (``models``) and loading with clear errors (``loader``)."""

from gateway.config.loader import ConfigError, ConfigProblem, format_loc, load_config
from gateway.config.models import (
    ENV_PREFIX,
    GatewayConfig,
    InputConfig,
    LoggingConfig,
    MetricsConfig,
    MqttConfig,
    OutputsConfig,
    PipelineConfig,
    QueueConfig,
    TlsConfig,
)

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "ConfigProblem",
    "GatewayConfig",
    "InputConfig",
    "LoggingConfig",
    "MetricsConfig",
    "MqttConfig",
    "OutputsConfig",
    "PipelineConfig",
    "QueueConfig",
    "TlsConfig",
    "format_loc",
    "load_config",
]
