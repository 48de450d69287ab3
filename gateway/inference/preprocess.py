"""Turning a camera frame into the input an image model expects, as its :class:`InputSpec` says.

Frames arrive as BGR ``uint8`` arrays (OpenCV's convention). :class:`ImageInput` resizes, reorders
the channels and normalises. When the model's input is quantised so that its quantised values *are*
the pixels (``scale = 1/std`` and ``zero_point = mean``, as for SSD MobileNet: 1/128 and 128), the
uint8 pixels are passed through untouched — no float round trip per frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from gateway.inference.model import Model


class ImageInput:
    """Prepares frames for one image model (NHWC input)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._configure()

    def _configure(self) -> None:
        # Called again if a hot reload swapped in a model with another input type.
        spec = self.model.spec.input
        tensor = self._tensor = self.model.inputs[0]
        if len(tensor.shape) != 4:
            raise ValueError(f"model {self.model.name!r} input {tensor.shape} is not an NHWC image")
        height, width = tensor.shape[1], tensor.shape[2]
        self.size: tuple[int, int] = spec.size or (width, height)
        self.swap_channels = spec.colour == "RGB"
        mean = np.broadcast_to(np.asarray(spec.mean, dtype=np.float32), (3,))
        std = np.broadcast_to(np.asarray(spec.std, dtype=np.float32), (3,))
        self._mean, self._inv_std = mean, 1.0 / std
        self.passthrough = bool(
            tensor.quantized
            and tensor.dtype == np.uint8
            and np.allclose(mean, tensor.zero_point, atol=0.5)
            and np.allclose(std * tensor.scale, 1.0, rtol=1e-3)
        )

    def prepare(self, frame_bgr: np.ndarray) -> np.ndarray:
        """The model input for one frame: uint8 pixels (pass-through) or normalised float32."""
        if self.model.inputs[0] is not self._tensor:
            self._configure()
        image = frame_bgr
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
        if self.swap_channels:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if self.passthrough:
            return image
        return (image.astype(np.float32) - self._mean) * self._inv_std
