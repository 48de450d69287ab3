"""Plane geometry shared by decoders, the tracker, counting lines and zones.

Boxes are ``(x1, y1, x2, y2)`` in frame pixels (x to the right, y down). Functions that work on many
boxes take ``(N, 4)`` float arrays so the tracker's association stays vectorised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Point = tuple[float, float]

AnchorName = Literal["bottom_centre", "centre", "top_centre", "left_centre", "right_centre"]


def anchor_point(box: Sequence[float], anchor: AnchorName) -> Point:
    """The point of ``box`` that represents the object for counting and zones.

    ``bottom_centre`` (where a vehicle touches the road) is the usual choice for cameras looking
    down at an angle; ``centre`` suits top-down views.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    if anchor == "bottom_centre":
        return cx, y2
    if anchor == "centre":
        return cx, cy
    if anchor == "top_centre":
        return cx, y1
    if anchor == "left_centre":
        return x1, cy
    if anchor == "right_centre":
        return x2, cy
    raise ValueError(f"unknown anchor {anchor!r}")


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4)."""
    if a.size == 0 or b.size == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0.0, None) * np.clip(iy2 - iy1, 0.0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out: FloatArray = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    return out


def centre_distance_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """Distance between box centres measured in box sizes: x offsets in widths, y offsets in heights.

    Scale-free, so one gate works for near (large) and far (small) vehicles, and a step of one car
    length along a lane weighs less than a step of one car height into the next lane. Used to
    associate boxes that no longer overlap between frames at low frame rates.
    """
    if a.size == 0 or b.size == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    ca = (a[:, :2] + a[:, 2:4]) / 2.0
    cb = (b[:, :2] + b[:, 2:4]) / 2.0
    w = np.maximum(np.maximum((a[:, 2] - a[:, 0])[:, None], (b[:, 2] - b[:, 0])[None, :]), 1e-6)
    h = np.maximum(np.maximum((a[:, 3] - a[:, 1])[:, None], (b[:, 3] - b[:, 1])[None, :]), 1e-6)
    dx = (ca[:, None, 0] - cb[None, :, 0]) / w
    dy = (ca[:, None, 1] - cb[None, :, 1]) / h
    out: FloatArray = np.hypot(dx, dy)
    return out


@dataclass(frozen=True, slots=True)
class Polygon:
    """A closed polygon in frame pixels (region of interest or zone)."""

    points: tuple[Point, ...]

    def __post_init__(self) -> None:
        if len(self.points) < 3:
            raise ValueError("a polygon needs at least 3 points")

    def contains(self, point: Point) -> bool:
        """Whether ``point`` lies inside the polygon (even-odd rule; points on an edge may go either way)."""
        x, y = point
        inside = False
        pts = self.points
        j = len(pts) - 1
        for i in range(len(pts)):
            xi, yi = pts[i]
            xj, yj = pts[j]
            if (yi > y) != (yj > y):
                x_cross = xi + (y - yi) * (xj - xi) / (yj - yi)
                if x < x_cross:
                    inside = not inside
            j = i
        return inside

    def area(self) -> float:
        """Area in square pixels (shoelace formula)."""
        pts = np.asarray(self.points, dtype=np.float64)
        x, y = pts[:, 0], pts[:, 1]
        return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def scale_points(points: Sequence[Sequence[float]], width: int, height: int) -> tuple[Point, ...]:
    """Normalised ``[0, 1]`` coordinates to frame pixels."""
    return tuple((float(p[0]) * width, float(p[1]) * height) for p in points)
