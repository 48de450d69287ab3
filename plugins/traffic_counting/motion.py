"""Motion gating: decide from a cheap look at a downscaled frame whether the detector needs to run.

On a still scene (a parked car park at night, an empty road) running a 65 ms detector on every frame
buys nothing; tracks are held where they are instead. The gate downscales the frame (160 px wide by
default), blurs it and measures the fraction of changed pixels, either against a MOG2 background
model or against the previous frame. After motion stops the detector keeps running for
``tail_frames`` frames so leaving objects are seen leaving, and it always runs at least every
``refresh_s`` seconds so a mistake of the gate cannot freeze the picture for long.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GateDecision:
    """The gate's verdict on one frame."""

    run_detector: bool
    motion: float
    """Fraction of the downscaled frame that changed (0..1)."""
    reason: str
    """``motion``, ``tracking``, ``tail``, ``refresh``, ``first`` or ``still``."""


class MotionGate:
    """Per-camera motion detector with counters of the frames it let through and skipped."""

    def __init__(
        self,
        method: Literal["mog2", "diff"] = "diff",
        width: int = 160,
        min_motion: float = 0.002,
        pixel_threshold: int = 8,
        tail_frames: int = 2,
        refresh_s: float = 5.0,
        mask: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        self.method = method
        self.width = width
        self.min_motion = min_motion
        self.pixel_threshold = pixel_threshold
        self.tail_frames = tail_frames
        self.refresh_s = refresh_s
        self._mask_full = mask
        self._mask: npt.NDArray[np.bool_] | None = None
        self._prev: npt.NDArray[np.uint8] | None = None
        self._mog2: cv2.BackgroundSubtractorMOG2 | None = None
        self._tail = 0
        self._last_run_ts: float | None = None
        self.frames = 0
        self.skipped = 0

    def _small(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        h, w = image.shape[:2]
        height = max(1, round(h * self.width / w))
        small = cv2.resize(image, (self.width, height), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        out: npt.NDArray[np.uint8] = np.asarray(cv2.GaussianBlur(gray, (5, 5), 0), dtype=np.uint8)
        if self._mask is None and self._mask_full is not None:
            m = cv2.resize(self._mask_full, (self.width, height), interpolation=cv2.INTER_NEAREST)
            self._mask = m > 0
        return out

    def motion(self, image: npt.NDArray[np.uint8]) -> float:
        """Fraction of changed pixels in ``image`` (BGR) since the previous frame or the background."""
        small = self._small(image)
        if self.method == "mog2":
            if self._mog2 is None:
                self._mog2 = cv2.createBackgroundSubtractorMOG2(history=200, varThreshold=16, detectShadows=False)
            changed = self._mog2.apply(small) > 0
            first = self._prev is None
        else:
            first = self._prev is None or self._prev.shape != small.shape
            changed = (
                np.zeros(small.shape, bool) if first else cv2.absdiff(small, self._prev) > self.pixel_threshold  # type: ignore[arg-type]
            )
        self._prev = small
        if first:
            return 1.0
        if self._mask is not None:
            area = int(self._mask.sum())
            return float((changed & self._mask).sum()) / max(area, 1)
        return float(changed.mean())

    def check(self, image: npt.NDArray[np.uint8], ts: float, tracking: bool = False) -> GateDecision:
        """Whether the detector should run on this frame.

        ``tracking``: objects are being followed as they move, so the scene is not still whatever the
        pixels say (a cyclist far away changes fewer pixels than ``min_motion``); the detector runs.
        """
        self.frames += 1
        motion = self.motion(image)
        if self._last_run_ts is None:
            reason = "first"
        elif tracking:
            reason = "tracking"
        elif motion >= self.min_motion:
            reason = "motion"
            self._tail = self.tail_frames
        elif self._tail > 0:
            self._tail -= 1
            reason = "tail"
        elif ts - self._last_run_ts >= self.refresh_s:
            reason = "refresh"
        else:
            self.skipped += 1
            return GateDecision(False, motion, "still")
        if reason == "first":
            self._tail = self.tail_frames
        self._last_run_ts = ts
        return GateDecision(True, motion, reason)
