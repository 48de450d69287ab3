"""Frame to model input: resize (stretch or letterbox), colour order, normalisation to real units."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from plugins.traffic_counting.decoders import InputGeometry


class FramePreparer:
    """Turns BGR ``uint8`` frames into the float32 input tensor a detector expects.

    ``input_shape`` is the model's first input shape, NHWC (TFLite) or NCHW (ONNX exports);
    ``real = (pixel - mean) / std`` per channel, in the model's colour order.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        colour: Literal["RGB", "BGR"] = "RGB",
        mean: float | tuple[float, float, float] = 0.0,
        std: float | tuple[float, float, float] = 1.0,
        resize: Literal["stretch", "letterbox"] = "stretch",
        size: tuple[int, int] | None = None,
        interpolation: Literal["linear", "area"] = "linear",
    ) -> None:
        shape = tuple(int(v) for v in input_shape)
        if len(shape) != 4:
            raise ValueError(f"detector input must be 4-D, got {shape}")
        self.channels_first = shape[1] == 3 and shape[3] != 3
        h, w = (shape[2], shape[3]) if self.channels_first else (shape[1], shape[2])
        if size is not None:
            w, h = size
        self.width, self.height = int(w), int(h)
        self.colour = colour
        self.mean = np.asarray(mean, dtype=np.float32)
        self.inv_std = np.float32(1.0) / np.asarray(std, dtype=np.float32)
        self.resize = resize
        self.interpolation = cv2.INTER_AREA if interpolation == "area" else cv2.INTER_LINEAR

    def __call__(self, image: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], InputGeometry]:
        """The input tensor (batch of one) and how the frame maps onto it."""
        fh, fw = image.shape[:2]
        if self.resize == "letterbox":
            geometry = InputGeometry.letterbox(fw, fh, self.width, self.height)
            nw, nh = round(fw * geometry.scale_x), round(fh * geometry.scale_y)
            canvas = np.full((self.height, self.width, 3), 114, dtype=np.uint8)
            x0, y0 = int(geometry.pad_x), int(geometry.pad_y)
            canvas[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(image, (nw, nh), interpolation=self.interpolation)
            resized: npt.NDArray[np.uint8] = canvas
        else:
            geometry = InputGeometry.stretch(fw, fh, self.width, self.height)
            resized = np.asarray(cv2.resize(image, (self.width, self.height), interpolation=self.interpolation))
        if self.colour == "RGB":
            resized = np.asarray(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB))
        x = resized.astype(np.float32)
        x -= self.mean
        x *= self.inv_std
        if self.channels_first:
            x = x.transpose(2, 0, 1)
        return x[None, ...], geometry
