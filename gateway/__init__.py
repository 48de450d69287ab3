"""Edge AI gateway: MQTT streams through plugin pipelines on quantized models, buffered offline."""

__version__ = "0.1.0"
