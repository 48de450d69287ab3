"""Motion gating on real rendered frames: still scenes skip the detector, motion runs it."""

from __future__ import annotations

import numpy as np

from plugins.traffic_counting.motion import MotionGate


def _street(car_x: int | None, noise: np.random.Generator | None = None) -> np.ndarray:
    image = np.full((480, 640, 3), 90, np.uint8)
    image[300:420] = 60  # road
    image[100:200, 50:150] = (40, 120, 40)  # a tree
    if car_x is not None:
        image[320:380, car_x : car_x + 100] = (40, 40, 220)
    if noise is not None:
        image = np.clip(image.astype(np.int16) + noise.normal(0, 3, image.shape).astype(np.int16), 0, 255).astype(
            np.uint8
        )
    return image


def test_diff_gate_skips_a_still_scene_with_sensor_noise_and_runs_on_motion() -> None:
    rng = np.random.default_rng(0)
    gate = MotionGate(method="diff", tail_frames=1, refresh_s=100)
    decisions = [gate.check(_street(200, rng), i / 10).run_detector for i in range(20)]
    assert decisions[0] and not any(decisions[2:])  # first frame, one tail frame, then still
    moving = [gate.check(_street(200 + 15 * i, rng), 2 + i / 10) for i in range(1, 6)]
    assert all(d.run_detector and d.reason == "motion" for d in moving)
    assert gate.frames == 25 and gate.skipped == 18


def test_mog2_gate_learns_the_background() -> None:
    rng = np.random.default_rng(1)
    gate = MotionGate(method="mog2", tail_frames=0, refresh_s=100)
    for i in range(40):
        gate.check(_street(None, rng), i / 10)
    assert not gate.check(_street(None, rng), 4.0).run_detector
    assert gate.check(_street(300, rng), 4.1).run_detector


def test_gate_refreshes_the_detector_periodically_on_a_still_scene() -> None:
    gate = MotionGate(tail_frames=0, refresh_s=1.0)
    runs = [gate.check(_street(100), i / 10).reason for i in range(25)]
    assert runs.count("refresh") == 2 and runs[0] == "first"


def test_gate_mask_ignores_motion_outside_it() -> None:
    mask = np.zeros((480, 640), np.uint8)
    mask[:250] = 255  # only the upper part (the road is below)
    gate = MotionGate(tail_frames=0, refresh_s=100, mask=mask)
    gate.check(_street(100), 0.0)
    assert not gate.check(_street(300), 0.1).run_detector


def test_a_dark_car_on_a_dark_road_wakes_the_gate_and_sensor_noise_does_not() -> None:
    # A black car (grey 28) on dark asphalt (grey 40): a difference of 12 grey levels, less after the
    # gate's downscale and blur. Sensor noise of sigma 6 per frame on the still road does not wake it.
    rng = np.random.default_rng(0)

    def road(car_x: int | None) -> np.ndarray:
        image = np.full((480, 640, 3), 90, np.uint8)
        image[300:420] = 40
        if car_x is not None:
            image[340:376, car_x : car_x + 70] = 28
        return np.clip(image.astype(np.int16) + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)

    gate = MotionGate(tail_frames=0, refresh_s=100)
    gate.check(road(None), 0.0)
    assert not any(gate.check(road(None), i / 5).run_detector for i in range(1, 20))
    assert all(gate.check(road(600 - 30 * i), 4 + i / 5).reason == "motion" for i in range(1, 6))
    # The former default threshold (15 grey levels) missed it.
    blunt = MotionGate(pixel_threshold=15, tail_frames=0, refresh_s=100)
    blunt.check(road(None), 0.0)
    assert not any(blunt.check(road(600 - 30 * i), i / 5).run_detector for i in range(1, 6))
