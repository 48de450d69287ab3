"""The inference engine: models declared in config, loaded on the best runtime and delegate available.

``ModelRegistry(specs, base_dir).get(name)`` returns a :class:`Model` whose ``run`` takes and returns
real units whatever the model's types (float32, float16, int8, uint8), on LiteRT, tflite-runtime or
ONNX Runtime, with a delegate chain that falls back and reports what it chose.
"""

from gateway.inference.files import ModelFileError, ModelIntegrityError
from gateway.inference.model import LatencyStats, Model, ModelInfo
from gateway.inference.registry import ModelRegistry, UnknownModelError
from gateway.inference.runtimes import DelegateAttempt, RuntimeUnavailableError, TensorInfo
from gateway.inference.spec import DelegateSpec, InputSpec, ModelSpec

__all__ = [
    "DelegateAttempt",
    "DelegateSpec",
    "InputSpec",
    "LatencyStats",
    "Model",
    "ModelFileError",
    "ModelInfo",
    "ModelIntegrityError",
    "ModelRegistry",
    "ModelSpec",
    "RuntimeUnavailableError",
    "TensorInfo",
    "UnknownModelError",
]
