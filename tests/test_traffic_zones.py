"""Zone occupancy and dwell time, and speed estimation, fed scripted positions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from plugins.traffic_counting.geometry import Polygon
from plugins.traffic_counting.speed import SpeedEstimator
from plugins.traffic_counting.zones import Zone, ZoneMonitor, ZoneObject

SQUARE = Polygon(((100, 100), (300, 100), (300, 300), (100, 300)))


def test_occupancy_counts_objects_inside_by_class() -> None:
    zones = ZoneMonitor([Zone("queue", SQUARE)])
    zones.update(
        [ZoneObject(1, "car", (150, 150)), ZoneObject(2, "truck", (200, 250)), ZoneObject(3, "car", (50, 50))], 0.0
    )
    assert zones.occupancy() == {"queue": {"car": 1, "truck": 1}}


def test_zone_class_filter() -> None:
    zones = ZoneMonitor([Zone("bikes", SQUARE, frozenset({"bicycle"}))])
    zones.update([ZoneObject(1, "car", (150, 150)), ZoneObject(2, "bicycle", (160, 160))], 0.0)
    assert zones.occupancy() == {"bikes": {"bicycle": 1}}


def test_dwell_time_is_measured_from_entry_to_last_sighting() -> None:
    zones = ZoneMonitor([Zone("queue", SQUARE)])
    for i in range(11):  # inside from t=1.0 to t=4.0, then drives out
        t = i * 0.5
        x = 50 if t < 1.0 else 200 if t <= 4.0 else 400
        zones.update([ZoneObject(7, "car", (x, 200))], t)
    assert zones.dwell_now(5.0) == {"queue": 0.0}
    stats = zones.take_interval()["queue"]
    assert stats["entries"] == 1
    assert stats["dwell_max_s"] == pytest.approx(3.0)
    assert stats["occupancy_max"] == 1
    assert stats["occupancy_mean"] == pytest.approx(7 / 11, abs=1e-3)


def test_dwell_of_a_track_that_disappears_inside_ends_at_its_last_sighting() -> None:
    zones = ZoneMonitor([Zone("queue", SQUARE)])
    zones.update([ZoneObject(1, "car", (200, 200))], 0.0)
    zones.update([ZoneObject(1, "car", (201, 200))], 2.0)
    zones.update([], 10.0)
    assert zones.take_interval()["queue"]["dwell_max_s"] == pytest.approx(2.0)


def test_interval_statistics_restart_but_occupancy_carries_over() -> None:
    zones = ZoneMonitor([Zone("queue", SQUARE)])
    zones.update([ZoneObject(1, "car", (200, 200)), ZoneObject(2, "car", (210, 200))], 0.0)
    zones.take_interval()
    zones.update([ZoneObject(1, "car", (200, 200)), ZoneObject(2, "car", (210, 200))], 0.5)
    zones.update([ZoneObject(1, "car", (200, 200))], 1.0)
    second = zones.take_interval()["queue"]
    assert second["occupancy_max"] == 2  # the interval started with two inside
    assert second["entries"] == 0 and second["dwell_max_s"] == pytest.approx(0.5)


def test_polygon_contains_and_area() -> None:
    tri = Polygon(((0, 0), (10, 0), (0, 10)))
    assert tri.contains((2, 2)) and not tri.contains((8, 8))
    assert tri.area() == pytest.approx(50.0)


def test_speed_in_pixels_per_second_without_calibration() -> None:
    speed = SpeedEstimator(window_s=1.0)
    for i in range(11):
        speed.observe(1, (10.0 * i, 0.0), i * 0.2)
    s = speed.speed(1)
    assert s is not None and s.unit == "px/s" and s.value == pytest.approx(50.0)


def test_speed_through_a_homography_is_in_metres_per_second() -> None:
    # A road seen in perspective: a 3.5 m x 20 m ground rectangle maps to a trapezoid in the image.
    image_pts = np.float32([[280, 100], [360, 100], [480, 460], [160, 460]])
    ground_pts = np.float32([[0, 20], [3.5, 20], [3.5, 0], [0, 0]])
    homography = cv2.getPerspectiveTransform(image_pts, ground_pts)
    inverse = np.linalg.inv(homography)
    speed = SpeedEstimator(window_s=1.0, homography=homography.tolist())
    for i in range(11):  # 15 m/s along the lane centre, observed at 10 fps
        ground = np.array([1.75, 1.5 * i, 1.0])
        v = inverse @ ground
        speed.observe(3, (float(v[0] / v[2]), float(v[1] / v[2])), i * 0.1)
    s = speed.speed(3)
    assert s is not None and s.unit == "m/s" and s.value == pytest.approx(15.0, rel=0.01)


def test_speed_needs_two_observations_and_calibration_is_exclusive() -> None:
    speed = SpeedEstimator()
    speed.observe(1, (0.0, 0.0), 0.0)
    assert speed.speed(1) is None and speed.speed(99) is None
    with pytest.raises(ValueError):
        SpeedEstimator(metres_per_pixel=0.1, homography=np.eye(3).tolist())
