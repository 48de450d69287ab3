"""Tracker and counting lines on the camera simulator's scenes, fed its ground-truth boxes as detections.

This isolates tracking and counting from the detector: boxes are what a perfect detector would
report (clipped to the frame, dropped when mostly hidden), optionally with misses and jitter as a
real one has. Counts per class and direction are compared with the scene's own crossing record.
"""

from __future__ import annotations

import numpy as np
import pytest

from plugins.traffic_counting.decoders import CentroidGridDecoder, Detection, InputGeometry, LabelMap
from plugins.traffic_counting.options import TrafficCountingOptions
from plugins.traffic_counting.plugin import CameraScene

scenes = pytest.importorskip("plugins.traffic_counting.scenes", reason="camera simulator not available")


def count_scene(
    config: object,
    fps: float,
    seconds: float,
    miss: float = 0.0,
    jitter: float = 0.0,
    seed: int = 3,
    centroid_grid: bool = False,
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    scene = scenes.Scene(config, seed=seed)
    line = scenes.vertical_line(config)
    options = TrafficCountingOptions.model_validate(
        {
            "model": "oracle",
            "anchor": "centre",
            "motion": {"enabled": False},
            "lines": [{"name": line.name, "points": [list(line.p1), list(line.p2)]}],
        }
    )
    step = (config.width / 24, config.height / 18) if centroid_grid else None  # type: ignore[attr-defined]
    counter = CameraScene("sim", config.width, config.height, options, step)  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed)
    grid = _CentroidOracle(config, seed) if centroid_grid else None
    start = scene.time
    for frame in scene.frames(int(seconds * fps), fps):
        if grid is not None:
            counter.step(grid.detections(frame, rng, miss), frame.ts)
            continue
        detections = []
        for o in frame.objects:
            if o.visible * o.in_frame < 0.5 or rng.random() < miss:
                continue
            x1, y1, x2, y2 = o.box
            wobble = rng.normal(0.0, jitter, 4) * np.array([x2 - x1, y2 - y1, x2 - x1, y2 - y1])
            detections.append(
                Detection(
                    x1 + wobble[0],
                    y1 + wobble[1],
                    x2 + wobble[2],
                    y2 + wobble[3],
                    float(rng.uniform(0.6, 0.95)),
                    0,
                    o.label,
                )
            )
        counter.step(detections, frame.ts)
    truth = scene.counts(line, since=start)
    got = counter.counter.counts.snapshot().get(line.name, {})
    return truth, got


class _CentroidOracle:
    """Ground truth as a centroid-grid detector would report it: a heatmap of visible-box centres
    (192x144 input, stride 8, one object per cell) decoded by the plugin's own decoder."""

    def __init__(self, config: object, seed: int) -> None:
        self.geometry = InputGeometry.stretch(config.width, config.height, 192, 144)  # type: ignore[attr-defined]
        labels = list(scenes.LABELS)
        # nominal sizes: median ground-truth box per class in model input pixels, as a user would measure
        sizes: dict[str, list[tuple[float, float]]] = {}
        for f in scenes.Scene(config, seed=seed + 1000).frames(100, 2.0):
            for o in f.objects:
                x1, y1, x2, y2 = o.box
                sizes.setdefault(o.label, []).append(
                    ((x2 - x1) * 192 / f.image.shape[1], (y2 - y1) * 144 / f.image.shape[0])
                )
        box_size = {k: tuple(np.median(np.array(v), axis=0)) for k, v in sizes.items()}
        self.decoder = CentroidGridDecoder(LabelMap(labels), grouping="peaks", box_size=box_size)  # type: ignore[arg-type]
        self.labels = labels

    def detections(self, frame: object, rng: np.random.Generator, miss: float) -> list[Detection]:
        heat = np.zeros((1, 18, 24, len(self.labels) + 1), np.float32)
        heat[..., 0] = 1.0
        sx = 192 / frame.image.shape[1]  # type: ignore[attr-defined]
        sy = 144 / frame.image.shape[0]  # type: ignore[attr-defined]
        for o in frame.objects:  # type: ignore[attr-defined]
            if o.visible * o.in_frame < 0.4 or rng.random() < miss:
                continue
            cx, cy = o.visible_centre
            col, row = min(int(cx * sx / 8), 23), min(int(cy * sy / 8), 17)
            p = float(rng.uniform(0.6, 0.99))
            heat[0, row, col] = 0.0
            heat[0, row, col, 0] = 1.0 - p
            heat[0, row, col, self.labels.index(o.label) + 1] = p
        return self.decoder.decode([heat], self.geometry)


def _flat(counts: dict[str, dict[str, int]]) -> dict[tuple[str, str], int]:
    return {(c, d): n for c, per in counts.items() for d, n in per.items() if n}


def test_clean_scene_counts_match_exactly_per_class_and_direction() -> None:
    truth, got = count_scene(scenes.SceneConfig.clean(), fps=5.0, seconds=150)
    assert sum(_flat(truth).values()) >= 50
    assert _flat(got) == _flat(truth)


def test_busy_stop_and_go_scene_with_detector_misses_and_jitter_within_two_percent() -> None:
    truth, got = count_scene(scenes.SceneConfig.busy(), fps=5.0, seconds=150, miss=0.05, jitter=0.03)
    t, g = _flat(truth), _flat(got)
    total = sum(t.values())
    assert total >= 100
    assert abs(sum(g.values()) - total) <= 0.02 * total
    assert sum(abs(g.get(k, 0) - t.get(k, 0)) for k in set(t) | set(g)) <= max(2, 0.02 * total)


def test_centroid_grid_detections_on_the_busy_scene() -> None:
    # Cell-quantised centres and nominal boxes, one object per cell, as a coarse (stride 8) grid detector reports
    # them; line margins are raised to half a cell so a hop between neighbouring cells never counts.
    # Vehicles stay within 2 %; people walking in groups share cells (one object per cell is the
    # layout's limit), so they are under-counted, never over-counted.
    truth, got = count_scene(scenes.SceneConfig.busy(), fps=5.0, seconds=150, miss=0.03, centroid_grid=True)
    t, g = _flat(truth), _flat(got)
    vehicles = {k for k in set(t) | set(g) if k[0] != "person"}
    vehicle_total = sum(t.get(k, 0) for k in vehicles)
    assert vehicle_total >= 80
    assert sum(abs(g.get(k, 0) - t.get(k, 0)) for k in vehicles) <= 0.02 * vehicle_total
    people = {k for k in set(t) | set(g) if k[0] == "person"}
    for k in people:
        assert 0.6 * t.get(k, 0) <= g.get(k, 0) <= t.get(k, 0)
