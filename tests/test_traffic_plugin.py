"""The ``traffic_counting`` plugin as the pipeline drives it: frames in, events, state and summaries out.

Most tests use rendered frames and a stand-in detector that finds the rendered boxes and answers in
the SSD post-processed layout, so the whole path (input preparation, decoding, filtering, tracking,
counting, gating, persistence, outputs) runs for real. The last tests run the real COCO SSD on a
real street video (skipped with the reason when either is missing).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from gateway.inference import ModelSpec
from gateway.messages import Event, Frame, Output, State, Summary
from gateway.plugin import PluginContext
from gateway.statestore import StateStore
from plugins.traffic_counting import TrafficCountingPlugin
from plugins.traffic_counting.options import TrafficCountingOptions

REPO = Path(__file__).resolve().parents[1]
SSD_DIR = REPO.parent / "shared" / "models" / "ssd_mobilenet_v1_coco"
STREET_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
W, H = 640, 480


@dataclass(frozen=True)
class _Info:
    name: str = "box-finder"
    version: str = "1"


class BoxFinder:
    """Stand-in detector: finds bright rectangles in the prepared input (white = car, green = person)."""

    input_shape = (1, 300, 300, 3)
    labels = ["car", "truck", "bicycle", "person"]
    info = _Info()

    def __init__(self) -> None:
        self.spec = ModelSpec(path="box-finder.tflite", output="ssd_postprocessed", input={"mean": 0, "std": 255})
        self.runs = 0

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.runs += 1
        rgb = x[0]
        boxes = np.zeros((1, 10, 4), np.float32)
        classes = np.zeros((1, 10), np.float32)
        scores = np.zeros((1, 10), np.float32)
        n = 0
        mask = (rgb.max(axis=2) > 0.5).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours[:10]:
            x0, y0, w, h = cv2.boundingRect(c)
            r, g, _b = rgb[y0 + h // 2, x0 + w // 2]
            boxes[0, n] = [y0 / 300, x0 / 300, (y0 + h) / 300, (x0 + w) / 300]
            classes[0, n] = 3 if g > 0.5 and r < 0.5 else 0
            scores[0, n] = 0.9
            n += 1
        return [boxes, classes, scores, np.array([float(n)], np.float32)]

    def close(self) -> None:
        pass


class Models:
    def __init__(self, model: Any) -> None:
        self.model = model

    def get(self, name: str) -> Any:
        return self.model


def render(objects: list[tuple[float, float, tuple[int, int, int]]]) -> np.ndarray:
    image = np.zeros((H, W, 3), np.uint8)
    for cx, cy, colour in objects:
        cv2.rectangle(image, (int(cx - 30), int(cy - 20)), (int(cx + 30), int(cy + 20)), colour, -1)
    return image


WHITE, GREEN = (255, 255, 255), (0, 255, 0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(tmp_path / "state.sqlite", "traffic")
    yield s
    s.close()


def make_plugin(store: StateStore, model: Any | None = None, **options: Any) -> tuple[TrafficCountingPlugin, list]:
    emitted: list[Output] = []
    submitted: list[Frame] = []
    base: dict[str, Any] = {
        "model": "finder",
        "anchor": "centre",
        "lines": [{"name": "gate", "points": [[0, 240], [640, 240]], "in_name": "south", "out_name": "north"}],
        "zones": [{"name": "lower", "points": [[0, 250], [640, 250], [640, 480], [0, 480]]}],
        "motion": {"enabled": False},
    }
    base.update(options)
    ctx = PluginContext(
        pipeline="traffic",
        gateway_id="gw-test",
        logger=logging.getLogger("test"),
        clock=lambda: 0.0,
        data_dir=Path.cwd(),
        models=Models(model or BoxFinder()),
        state=store,
        emit=emitted.append,
        submit=submitted.append,
    )
    plugin = TrafficCountingPlugin(TrafficCountingOptions.model_validate(base), ctx)
    return plugin, [emitted, submitted]


def feed(plugin: TrafficCountingPlugin, images: list[np.ndarray], fps: float = 10.0, t0: float = 0.0) -> list[Output]:
    out: list[Output] = []
    for i, image in enumerate(images):
        ts = t0 + i / fps
        out += list(plugin.process(Frame("camera/north", ts, ts, "north", image, seq=i)))
    return out


def down(x: float = 320, y0: float = 100, steps: int = 16, colour: tuple[int, int, int] = WHITE) -> list[np.ndarray]:
    return [render([(x, y0 + 20 * i, colour)]) for i in range(steps)]


def test_a_crossing_produces_one_event_with_class_direction_and_speed(store: StateStore) -> None:
    plugin, _ = make_plugin(store, speed={"metres_per_pixel": 0.05})
    outputs = feed(plugin, down())
    events = [o for o in outputs if isinstance(o, Event)]
    assert len(events) == 1
    e = events[0]
    assert e.type == "line_crossing"
    assert {k: e.data[k] for k in ("camera", "class", "line", "direction", "speed_unit")} == {
        "camera": "north",
        "class": "car",
        "line": "gate",
        "direction": "south",
        "speed_unit": "m/s",
    }
    assert e.data["speed"] == pytest.approx(10.0, rel=0.05)  # 200 px/s at 5 cm/px
    assert e.data["confidence"] == pytest.approx(0.9)
    assert e.ts == e.data["time"] and 0.6 < e.ts < 0.8


def test_state_is_emitted_only_when_counts_or_occupancy_change(store: StateStore) -> None:
    plugin, _ = make_plugin(store)
    images = down() + [down()[-1]] * 10  # the car stops in the lower zone
    states = [o for o in feed(plugin, images) if isinstance(o, State)]
    assert [s.key for s in states] == ["north"] * len(states)
    assert states[0].data == {
        "camera": "north",
        "lines": {"gate": {}},
        "zones": {"lower": {"occupancy": 0, "by_class": {}}},
    }
    assert states[-1].data["lines"] == {"gate": {"car": {"south": 1}}}
    assert states[-1].data["zones"]["lower"] == {"occupancy": 1, "by_class": {"car": 1}}
    assert len(states) <= 4  # initial, zone entry, crossing (and at most one more change), not one per frame


def test_summary_reports_interval_counts_and_starts_a_new_interval(store: StateStore) -> None:
    plugin, _ = make_plugin(store)
    feed(plugin, down(x=200) + down(x=450, colour=GREEN), t0=0.0)
    (summary,) = plugin.summarize(0.0, 60.0)
    assert isinstance(summary, Summary) and (summary.start, summary.end) == (0.0, 60.0)
    cam = summary.data["cameras"]["north"]
    assert cam["lines"] == {"gate": {"car": {"south": 1}, "person": {"south": 1}}}
    assert cam["frames"] == 32 and cam["detector_runs"] == 32 and cam["frames_gated"] == 0
    assert cam["zones"]["lower"]["entries"] == 2
    (second,) = plugin.summarize(60.0, 120.0)
    assert second.data["cameras"]["north"]["lines"] == {}
    assert second.data["cameras"]["north"]["frames"] == 0


def test_motion_gate_skips_the_detector_on_a_still_scene_and_counts_it(store: StateStore) -> None:
    finder = BoxFinder()
    plugin, _ = make_plugin(store, model=finder, motion={"enabled": True, "tail_frames": 1, "refresh_s": 100})
    images = down() + [down()[-1]] * 30 + down(x=150)
    outputs = feed(plugin, images)
    assert len([o for o in outputs if isinstance(o, Event)]) == 2
    (summary,) = plugin.summarize(0, 10)
    cam = summary.data["cameras"]["north"]
    assert cam["frames"] == 62
    # the detector keeps running until it has seen the object stop (its track's speed decays over a few
    # runs), then the gate skips the still frames
    assert cam["frames_gated"] >= 24 and finder.runs == cam["detector_runs"]


def test_a_tracked_object_too_small_to_wake_the_gate_is_followed_and_counted(store: StateStore) -> None:
    # A far-away cyclist changes fewer pixels than min_motion: once its track moves, the scene is not
    # still and the detector keeps running until it has crossed.
    finder = BoxFinder()
    plugin, _ = make_plugin(store, model=finder, motion={"enabled": True, "min_motion": 0.5, "refresh_s": 100})
    outputs = feed(plugin, down())
    assert len([o for o in outputs if isinstance(o, Event)]) == 1
    assert finder.runs == 16


def test_motion_outside_the_roi_does_not_wake_the_detector(store: StateStore) -> None:
    finder = BoxFinder()
    plugin, _ = make_plugin(
        store,
        model=finder,
        roi=[[[0, 0], [320, 0], [320, 480], [0, 480]]],
        motion={"enabled": True, "tail_frames": 0, "refresh_s": 100},
    )
    feed(plugin, [render([(500, 100 + 10 * i, WHITE)]) for i in range(20)])  # moves only in the right half
    assert finder.runs == 1  # the first frame only


def test_cumulative_counts_survive_a_restart(store: StateStore) -> None:
    plugin, _ = make_plugin(store)
    feed(plugin, down())
    plugin.close()
    again, _ = make_plugin(store)
    outputs = feed(again, down(x=150), t0=100.0)
    states = [o for o in outputs if isinstance(o, State)]
    assert states[0].data["lines"] == {"gate": {"car": {"south": 1}}}
    assert states[-1].data["lines"] == {"gate": {"car": {"south": 2}}}


def test_cameras_are_tracked_and_counted_separately(store: StateStore) -> None:
    plugin, _ = make_plugin(store)
    for i, image in enumerate(down()):
        plugin.process(Frame("camera/a", i / 10, i / 10, "a", image, seq=i))
        plugin.process(Frame("camera/b", i / 10, i / 10, "b", render([]), seq=i))
    (summary,) = plugin.summarize(0, 10)
    assert summary.data["cameras"]["a"]["lines"] == {"gate": {"car": {"south": 1}}}
    assert summary.data["cameras"]["b"]["lines"] == {}


def test_model_info_is_the_models(store: StateStore) -> None:
    plugin, _ = make_plugin(store)
    info = plugin.model_info()
    assert info is not None and (info.name, info.version) == ("box-finder", "1")


def test_camera_source_frames_are_submitted_and_its_state_emitted(store: StateStore, tmp_path: Path) -> None:
    video = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for image in down():
        writer.write(image)
    writer.release()
    plugin, (emitted, submitted) = make_plugin(
        store, sources=[{"camera": "file", "url": str(video), "fps": 10, "realtime": False}]
    )
    plugin.start()
    plugin.sources[0].join(timeout=10)
    plugin.close()
    assert len(submitted) == 16 and all(f.camera == "file" for f in submitted)
    states = [o.data["state"] for o in emitted if isinstance(o, State) and o.key == "source/file"]
    assert states == ["connecting", "streaming", "ended", "stopped"]
    outputs = [o for f in submitted for o in plugin.process(f)]
    assert len([o for o in outputs if isinstance(o, Event)]) == 1  # a JPEG-compressed replay counts the same


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lines": [{"name": "a", "points": [[0, 0], [1, 1]]}, {"name": "a", "points": [[0, 1], [1, 0]]}]}, "dupl"),
        ({"lines": [{"name": "a", "points": [[0, 0], [1, 1]], "in_name": "x", "out_name": "x"}]}, "differ"),
        ({"zones": [{"name": "z", "points": [[0, 0], [1, 1]]}]}, "at least 3"),
        ({"score_threshold": 0.1, "tracker": {"low_score": 0.3}}, "low_score"),
        ({"speed": {"homography": [[1, 0], [0, 1]]}}, "3x3"),
        ({"lines": [], "colour": "RGB"}, "Extra inputs"),
    ],
)
def test_bad_options_fail_with_a_clear_message(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrafficCountingOptions.model_validate({"model": "m", **options})


def test_options_schema_documents_every_field() -> None:
    schema = TrafficCountingOptions.model_json_schema()
    assert "lines" in schema["properties"] and "LineOptions" in schema["$defs"]
    for name, definition in schema["$defs"].items():
        for field, prop in definition.get("properties", {}).items():
            if name in {"InputSpec"}:
                continue
            assert prop.get("description"), f"{name}.{field} has no description"


class GridModel:
    """Stand-in centroid-grid detector: one car in the cell under the brightest pixel."""

    input_shape = (1, 144, 192, 3)
    labels = ["car", "truck", "bicycle", "person"]
    info = _Info("grid", "1")

    @dataclass(frozen=True)
    class _Tensor:
        shape: tuple[int, ...]

    outputs = (_Tensor((1, 18, 24, 5)),)

    def __init__(self) -> None:
        self.spec = ModelSpec(path="grid.tflite", output="centroid_grid")

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        heat = np.zeros((1, 18, 24, 5), np.float32)
        heat[..., 0] = 1.0
        gray = x[0].max(axis=2)
        if gray.max() > 0.5:
            y, xx = np.unravel_index(np.argmax(gray), gray.shape)
            heat[0, y // 8, xx // 8] = [0.1, 0.9, 0, 0, 0]
        return [heat]


def test_centroid_grid_cells_raise_line_margins_and_cars_are_counted(store: StateStore) -> None:
    plugin, _ = make_plugin(store, model=GridModel(), line_margin=2)
    outputs = feed(plugin, down())
    line = plugin.scenes["north"].lines[0]
    assert line.margin == pytest.approx(0.5 * 480 / 18 + 0.5)  # half a cell of the 18-row grid
    assert [o.data["direction"] for o in outputs if isinstance(o, Event)] == ["south"]


def test_a_model_without_a_detector_layout_is_refused(store: StateStore) -> None:
    finder = BoxFinder()
    finder.spec = ModelSpec(path="x.tflite")  # output: raw
    with pytest.raises(ValueError, match="decoder.layout"):
        make_plugin(store, model=finder)


# ---------------------------------------------------------------- the real COCO SSD on a real street video


def test_real_detector_tracks_pedestrians_with_stable_ids(store: StateStore) -> None:
    if not (SSD_DIR / "model.tflite").exists():
        pytest.skip(f"real COCO detector not available at {SSD_DIR} (it lives beside the repository)")
    if not STREET_VIDEO.exists():
        pytest.skip(f"street video {STREET_VIDEO} missing (Debian package opencv-doc)")
    from gateway.inference import ModelRegistry

    spec = ModelSpec(
        path=str(SSD_DIR / "model.tflite"),
        labels=str(SSD_DIR / "labelmap.txt"),
        output="ssd_postprocessed",
        input={"mean": 127.5, "std": 127.5},
    )
    model = ModelRegistry({"ssd": spec}, REPO).get("ssd")
    plugin, _ = make_plugin(
        store,
        model=model,
        classes=["person"],
        anchor="bottom_centre",
        lines=[{"name": "kerb", "points": [[0, 330], [768, 330]]}],
        zones=[],
    )
    cap = cv2.VideoCapture(str(STREET_VIDEO))
    images = []
    for i in range(60):
        ok, image = cap.read()
        assert ok
        if i % 2 == 0:
            images.append(image)
    cap.release()
    feed(plugin, images, fps=5.0)
    tracker = plugin.scenes["north"].tracker
    confirmed = [t for t in tracker.tracks if t.was_confirmed]
    assert confirmed, "no pedestrian tracked"
    longest = max(t.hits for t in confirmed)
    assert longest >= 25  # one person followed through most of the 30 frames under one id
    assert all(t.label == "person" for t in tracker.tracks)
