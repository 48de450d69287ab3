"""Speed of tracked objects from their observed anchor positions.

Without calibration the speed is in pixels per second (useful to compare, not to enforce limits).
With ``metres_per_pixel`` (a camera looking straight down) or a ``homography`` mapping image pixels
to ground-plane metres (any camera angle; four marked points on the road are enough to compute it,
e.g. with ``cv2.getPerspectiveTransform``) it is in metres per second.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from plugins.traffic_counting.geometry import Point

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Speed:
    """A speed with its unit (``m/s`` or ``px/s``)."""

    value: float
    unit: str


class SpeedEstimator:
    """Average speed of each track over the last ``window_s`` seconds of observations."""

    def __init__(
        self,
        window_s: float = 1.0,
        metres_per_pixel: float | None = None,
        homography: Sequence[Sequence[float]] | None = None,
    ) -> None:
        if metres_per_pixel is not None and homography is not None:
            raise ValueError("give metres_per_pixel or a homography, not both")
        self.window_s = window_s
        self.metres_per_pixel = metres_per_pixel
        self.homography = None if homography is None else np.asarray(homography, dtype=np.float64).reshape(3, 3)
        self.unit = "px/s" if metres_per_pixel is None and homography is None else "m/s"
        self._history: dict[int, deque[tuple[float, Point]]] = {}

    def _to_plane(self, p: Point) -> Point:
        if self.homography is not None:
            v = self.homography @ np.array([p[0], p[1], 1.0])
            return float(v[0] / v[2]), float(v[1] / v[2])
        scale = self.metres_per_pixel or 1.0
        return p[0] * scale, p[1] * scale

    def observe(self, track_id: int, anchor: Point, ts: float) -> None:
        """Record where the track was seen at ``ts``."""
        hist = self._history.setdefault(track_id, deque())
        hist.append((ts, self._to_plane(anchor)))
        # keep one sample older than the window so the window is always spanned
        while len(hist) > 2 and ts - hist[1][0] >= self.window_s:
            hist.popleft()

    def speed(self, track_id: int) -> Speed | None:
        """Current speed of the track, or None before two observations."""
        hist = self._history.get(track_id)
        if not hist or len(hist) < 2:
            return None
        (t0, p0), (t1, p1) = hist[0], hist[-1]
        if t1 <= t0:
            return None
        dist = float(np.hypot(p1[0] - p0[0], p1[1] - p0[1]))
        return Speed(round(dist / (t1 - t0), 3), self.unit)

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop removed tracks."""
        for tid in track_ids:
            self._history.pop(tid, None)
