"""The traffic camera simulator: deterministic scenes with ground truth that agrees with itself."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest

from plugins.traffic_counting.scenes import (
    LABELS,
    CountingLine,
    Scene,
    SceneConfig,
    vertical_line,
)
from plugins.traffic_counting.simulator import CameraSimulator


def _clip(config: SceneConfig, seed: int, count: int = 60, fps: float = 10.0) -> list:
    return list(Scene(config, seed=seed).frames(count, fps))


@pytest.mark.parametrize("preset", [SceneConfig.clean, SceneConfig.busy])
def test_same_seed_renders_identical_frames_and_ground_truth(preset) -> None:
    a = _clip(preset(), seed=11, count=30)
    b = _clip(preset(), seed=11, count=30)
    for fa, fb in zip(a, b, strict=True):
        assert fa.ts == fb.ts
        assert np.array_equal(fa.image, fb.image)
        assert fa.objects == fb.objects


def test_different_seeds_give_different_scenes() -> None:
    a = _clip(SceneConfig.busy(), seed=1, count=5)
    b = _clip(SceneConfig.busy(), seed=2, count=5)
    assert not np.array_equal(a[-1].image, b[-1].image)


def test_dynamics_do_not_depend_on_render_size() -> None:
    small = _clip(SceneConfig.busy(), seed=5, count=20)
    large = _clip(SceneConfig.busy(width=640, height=480), seed=5, count=20)
    assert large[0].image.shape == (480, 640, 3)
    for fs, fl in zip(small, large, strict=True):
        ids_small = {o.object_id: o.centre for o in fs.objects}
        ids_large = {o.object_id: o.centre for o in fl.objects}
        assert ids_small.keys() == ids_large.keys()
        for oid, (x, y) in ids_small.items():
            assert ids_large[oid] == pytest.approx((2 * x, 2 * y), abs=1e-6)


@pytest.mark.parametrize("preset", [SceneConfig.clean, SceneConfig.busy])
def test_boxes_lie_inside_the_frame_with_unique_ids(preset) -> None:
    cfg = preset()
    frames = _clip(cfg, seed=3, count=80, fps=2.0)
    assert sum(len(f.objects) for f in frames) > 80
    for f in frames:
        assert f.image.shape == (cfg.height, cfg.width, 3) and f.image.dtype == np.uint8
        ids = [o.object_id for o in f.objects]
        assert len(ids) == len(set(ids))
        for o in f.objects:
            x1, y1, x2, y2 = o.box
            assert 0 <= x1 < x2 <= cfg.width and 0 <= y1 < y2 <= cfg.height
            assert o.label in LABELS
            assert 0.0 < o.in_frame <= 1.0 and 0.0 <= o.visible <= 1.0


def test_object_ids_persist_and_labels_never_change() -> None:
    frames = _clip(SceneConfig.busy(), seed=4, count=100)
    label_of: dict[int, str] = {}
    last_seen: dict[int, int] = {}
    for f in frames:
        for o in f.objects:
            assert label_of.setdefault(o.object_id, o.label) == o.label
            if o.object_id in last_seen:
                # An object never leaves the frame and comes back: it is seen in consecutive frames.
                assert last_seen[o.object_id] == f.index - 1
            last_seen[o.object_id] = f.index


def test_objects_move_monotonically_along_their_lane() -> None:
    frames = _clip(SceneConfig.busy(), seed=6, count=150)
    xs: dict[int, list[float]] = {}
    for f in frames:
        for o in f.objects:
            xs.setdefault(o.object_id, []).append(o.centre[0])
    moving = 0
    for track in xs.values():
        steps = np.diff(track)
        assert (steps >= -1e-9).all() or (steps <= 1e-9).all()
        moving += bool(np.abs(steps).sum() > 5)
    assert moving >= 10


def test_busy_scene_has_stop_and_go_and_occlusion() -> None:
    frames = _clip(SceneConfig.busy(), seed=7, count=300, fps=5.0)
    speeds: dict[int, list[float]] = {}
    occluded = 0
    for f in frames:
        for o in f.objects:
            speeds.setdefault(o.object_id, []).append(o.speed)
            occluded += o.in_frame == 1.0 and o.visible < 0.6
    stop_and_go = [s for s in speeds.values() if any(v < 1.0 and max(s[i:]) > 20.0 for i, v in enumerate(s))]
    assert len(stop_and_go) >= 3, "vehicles should stop at a light and move off again"
    assert occluded >= 10, "clutter and nearer vehicles should hide parts of others"


def test_clean_scene_is_free_flowing_without_clutter() -> None:
    frames = _clip(SceneConfig.clean(), seed=8, count=200, fps=5.0)
    for f in frames:
        for o in f.objects:
            if o.label in ("car", "truck") and 0.2 * 320 < o.centre[0] < 0.8 * 320:
                assert o.speed > 10.0


def _counts_from_frames(frames, line_x: float) -> dict[str, dict[str, int]]:
    table = {label: {"in": 0, "out": 0} for label in LABELS}
    prev: dict[int, float] = {}
    labels: dict[int, str] = {}
    for f in frames:
        for o in f.objects:
            labels[o.object_id] = o.label
            x = o.centre[0]
            if o.object_id in prev:
                before = prev[o.object_id]
                if before >= line_x > x:
                    table[o.label]["in"] += 1
                elif before < line_x <= x:
                    table[o.label]["out"] += 1
            prev[o.object_id] = x
    return table


@pytest.mark.parametrize("preset", [SceneConfig.clean, SceneConfig.busy])
def test_counts_match_the_per_frame_trajectories(preset) -> None:
    cfg = preset()
    scene = Scene(cfg, seed=9)
    frames = list(scene.frames(600, 10.0))
    line = vertical_line(cfg)
    truth = scene.counts(line)
    assert truth == _counts_from_frames(frames, cfg.width / 2)
    total = sum(v["in"] + v["out"] for v in truth.values())
    assert total >= 10
    # Far lanes drive to the left ("in"), near lanes to the right ("out"): both must occur.
    assert sum(v["in"] for v in truth.values()) > 0 and sum(v["out"] for v in truth.values()) > 0


def test_crossings_agree_with_object_trajectories_and_line_extent() -> None:
    cfg = SceneConfig.busy()
    scene = Scene(cfg, seed=10)
    list(scene.frames(300, 10.0))
    full = vertical_line(cfg)
    crossings = scene.crossings(full)
    assert crossings == sorted(crossings, key=lambda c: (c.ts, c.object_id))
    for c in crossings:
        track = scene.trajectory(c.object_id)
        before = [x for t, x, _ in track if t < c.ts]
        after = [x for t, x, _ in track if t >= c.ts]
        assert (before[-1] >= 160 > after[0]) if c.direction == "in" else (before[-1] < 160 <= after[0])
    # A line across the near half of the road only sees the near lanes, which drive to the right ("out").
    near_half = CountingLine("near", (160.0, 143.0 * cfg.height / 240), (160.0, 200.0 * cfg.height / 240))
    near, everything = scene.counts(near_half), scene.counts(full)
    assert near["person"] == {"in": 0, "out": 0}
    for label in ("car", "truck", "bicycle"):
        assert near[label]["in"] == 0
    assert sum(near[label]["out"] for label in LABELS) > 0
    assert sum(near[label]["out"] for label in LABELS) < sum(everything[label]["out"] for label in LABELS)


def test_reversing_the_line_swaps_directions() -> None:
    cfg = SceneConfig.clean()
    scene = Scene(cfg, seed=12)
    list(scene.frames(300, 10.0))
    line = vertical_line(cfg)
    flipped = CountingLine("flipped", line.p2, line.p1)
    a, b = scene.counts(line), scene.counts(flipped)
    for label in LABELS:
        assert a[label]["in"] == b[label]["out"] and a[label]["out"] == b[label]["in"]


def test_simulator_publishes_jpeg_frames_at_its_period() -> None:
    sim = CameraSimulator("cam7", fps=8.0, seed=1)
    assert sim.period_s == pytest.approx(0.125)
    out = sim.messages(now=1_700_000_000.0)
    assert len(out) == 1
    topic, payload = out[0]
    assert topic == "cam7/frame"
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3)
    t0 = sim.scene.time
    sim.messages(now=1_700_000_000.0)
    assert sim.scene.time - t0 == pytest.approx(0.125)
    assert sim.frames_sent == 2


def test_simulator_json_payload_carries_timestamp_camera_and_image() -> None:
    sim = CameraSimulator("cam2", fps=5.0, seed=2, payload="json", preset="busy")
    [(topic, payload)] = sim.messages(now=1_234.5)
    doc = json.loads(payload)
    assert topic == "cam2/frame"
    assert set(doc) == {"ts", "camera", "image"}
    assert doc["ts"] == 1_234.5 and doc["camera"] == "cam2"
    image = cv2.imdecode(np.frombuffer(base64.b64decode(doc["image"]), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3)


def test_simulator_is_deterministic_and_its_counts_cover_the_frames_sent() -> None:
    a, b = CameraSimulator(seed=3, preset="busy"), CameraSimulator(seed=3, preset="busy")
    for _ in range(50):
        assert a.messages(0.0) == b.messages(0.0)
    line = vertical_line(a.scene.config)
    assert a.counts(line) == b.counts(line)
    assert all(c.ts <= a.last_frame.ts for c in a.crossings(line))  # type: ignore[union-attr]


def test_simulator_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="fps"):
        CameraSimulator(fps=0)
    with pytest.raises(ValueError, match="payload"):
        CameraSimulator(payload="png")  # type: ignore[arg-type]
