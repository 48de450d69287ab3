"""The ``traffic_counting`` plugin: camera frames in, per-class, per-direction counts out.

Per frame: motion gate -> (detector -> decoder -> filter -> tracker | hold tracks) -> counting lines,
zones and speeds. Each camera (``Frame.camera``) has its own :class:`CameraScene`, so one pipeline
can serve several cameras with the same lines.

Outputs:

- ``Event("line_crossing", {track_id, class, line, direction, time, confidence, speed, speed_unit,
  camera})`` once per object, line and direction.
- ``State`` (retained, key = camera): cumulative counts per line, class and direction, and current
  zone occupancy; emitted only when it changed. Cumulative counts survive restarts through the
  pipeline's state store.
- ``Summary`` per interval: counts per camera, line, class and direction; zone occupancy
  (max/mean), entries and dwell times; frames processed, detector runs and frames skipped by the
  motion gate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import cv2
import numpy as np

from gateway.messages import Event, Frame, InputMessage, Output, State, Summary
from gateway.plugin import ModelInfoLike, Plugin, PluginContext
from plugins.traffic_counting.counting import CountingLine, Crossing, LineCounter
from plugins.traffic_counting.decoders import (
    CentroidGridDecoder,
    Decoder,
    Detection,
    DetectionFilter,
    LabelMap,
    SsdPostprocessedDecoder,
    YoloDecoder,
)
from plugins.traffic_counting.geometry import Point, Polygon, scale_points
from plugins.traffic_counting.motion import MotionGate
from plugins.traffic_counting.options import TrafficCountingOptions
from plugins.traffic_counting.preprocess import FramePreparer
from plugins.traffic_counting.sources import CameraSource, SourceStatus
from plugins.traffic_counting.speed import Speed, SpeedEstimator
from plugins.traffic_counting.tracker import ByteTracker, TrackerConfig, TrackState
from plugins.traffic_counting.zones import Zone, ZoneMonitor, ZoneObject

logger = logging.getLogger(__name__)

STATE_KEY_PREFIX = "traffic_counting/counts/"


def build_decoder(options: TrafficCountingOptions, layout: str, labels: LabelMap) -> Decoder:
    """The decoder for ``layout`` configured from the plugin options."""
    d = options.decoder
    if layout == "ssd_postprocessed":
        return SsdPostprocessedDecoder(labels, label_offset=d.label_offset)
    if layout == "yolo":
        return YoloDecoder(
            labels,
            min_score=options.tracker.low_score,
            iou_threshold=d.iou_threshold,
            normalised=d.normalised_boxes,
        )
    if layout == "centroid_grid":
        return CentroidGridDecoder(
            labels, threshold=d.grid_threshold, grouping=d.grid_grouping, box_size=d.grid_box_size
        )
    raise ValueError(f"unsupported detector output layout {layout!r} (ssd_postprocessed, yolo, centroid_grid)")


class CameraScene:
    """Everything one camera needs between frames: gate, tracker, lines, zones, speeds, counters."""

    def __init__(
        self,
        camera: str,
        width: int,
        height: int,
        options: TrafficCountingOptions,
        position_step: tuple[float, float] | None = None,
    ) -> None:
        """``position_step``: how coarsely the detector places objects, in frame pixels (x, y), e.g. one
        cell of a centroid grid; line margins are raised to half of it so one step never counts."""
        self.camera = camera
        self.width, self.height = width, height
        opts = options

        def pts(points: Sequence[Sequence[float]]) -> tuple[Point, ...]:
            if opts.units == "normalised":
                return scale_points(points, width, height)
            return tuple((float(p[0]), float(p[1])) for p in points)

        roi = [Polygon(pts(p)) for p in opts.roi]
        self.filter = DetectionFilter(
            classes=opts.classes,
            min_score=opts.tracker.low_score,
            class_scores=opts.class_thresholds,
            roi=roi,
            anchor=opts.anchor,
        )
        t = opts.tracker
        self.tracker = ByteTracker(
            TrackerConfig(
                high_score=opts.score_threshold,
                low_score=t.low_score,
                new_track_score=t.new_track_score if t.new_track_score is not None else opts.score_threshold,
                match_iou=t.match_iou,
                centre_gate=t.centre_gate,
                min_hits=t.min_hits,
                max_lost_s=t.max_lost_s,
                max_lost_frames=t.max_lost_frames,
                lane_refind=t.lane_refind,
            )
        )
        lines = []
        for lo in opts.lines:
            p1, p2 = pts(lo.points)
            margin = lo.margin if lo.margin is not None else opts.line_margin
            if position_step is not None:
                # the step across the line between neighbouring detector positions
                length = max(float(np.hypot(p2[0] - p1[0], p2[1] - p1[1])), 1e-9)
                nx, ny = (p2[1] - p1[1]) / length, (p2[0] - p1[0]) / length
                margin = max(margin, 0.5 * (abs(nx) * position_step[0] + abs(ny) * position_step[1]) + 0.5)
            line = CountingLine(
                lo.name, p1, p2, lo.in_name, lo.out_name, frozenset(lo.classes) if lo.classes else None, margin
            )
            lines.append(line.fitted_to(width, height))
        self.lines = lines
        self.counter = LineCounter(lines, count_returns=opts.count_returns)
        self.zones = ZoneMonitor(
            [Zone(z.name, Polygon(pts(z.points)), frozenset(z.classes) if z.classes else None) for z in opts.zones]
        )
        s = opts.speed
        self.speed = SpeedEstimator(s.window_s, s.metres_per_pixel, s.homography) if s.enabled else None
        m = opts.motion
        mask = None
        if roi:  # motion outside the regions of interest (trees, another road) does not wake the detector
            mask = np.zeros((height, width), np.uint8)
            cv2.fillPoly(mask, [np.round(np.asarray(p.points)).astype(np.int32) for p in roi], 255)
        self.gate = (
            MotionGate(m.method, m.width, m.min_motion, m.pixel_threshold, m.tail_frames, m.refresh_s, mask)
            if m.enabled
            else None
        )
        self.anchor = opts.anchor
        self.frames = 0
        self.detector_runs = 0
        self.interval_frames = 0
        self.interval_runs = 0
        self._last_state: dict[str, Any] | None = None

    def step(self, detections: Sequence[Detection] | None, ts: float) -> list[tuple[Crossing, Speed | None]]:
        """Advance the scene to ``ts`` with one frame's raw detections (None: detector skipped).

        Returns the crossings counted in this step, each with the object's speed when known.
        """
        counted: list[tuple[Crossing, Speed | None]] = []
        if detections is None:
            self.tracker.hold(ts)
        else:
            update = self.tracker.update(self.filter(detections), ts)
            for track, det in update.observed:
                anchor = det.anchor(self.anchor)
                if self.speed is not None:
                    self.speed.observe(track.id, anchor, ts)
                x1, y1, x2, y2 = track.own_box
                for crossing in self.counter.observe(
                    track.id, anchor, ts, track.label, det.score, track.confirmed, (x2 - x1, y2 - y1)
                ):
                    counted.append((crossing, self.speed.speed(track.id) if self.speed is not None else None))
            if update.removed:
                for t in update.removed:
                    if self._touches_border(t.last_detection):
                        for crossing in self.counter.left_frame(t.id, t.label, t.score, t.was_confirmed):
                            counted.append((crossing, self.speed.speed(t.id) if self.speed is not None else None))
                gone = [t.id for t in update.removed]
                self.counter.forget(gone)
                if self.speed is not None:
                    self.speed.forget(gone)
        if self.zones.zones:
            self.zones.update(
                [
                    ZoneObject(t.id, t.label, t.last_detection.anchor(self.anchor))
                    for t in self.tracker.tracks
                    if t.state in (TrackState.CONFIRMED, TrackState.LOST)
                ],
                ts,
            )
        return counted

    def tracking_motion(self) -> bool:
        """Whether a confirmed track, seen in its last detector run, is moving (the scene is not still)."""
        for t in self.tracker.tracks:
            if t.state == TrackState.CONFIRMED and t.misses == 0:
                vx, vy = t.kalman.velocity
                x1, y1, x2, y2 = t.box
                # a tenth of its own size per second: parked cars jitter less, walkers move more
                if (vx * vx + vy * vy) ** 0.5 > 0.1 * max(x2 - x1, y2 - y1, 1.0):
                    return True
        return False

    def _touches_border(self, det: Detection, tolerance: float = 2.0) -> bool:
        return (
            det.x1 <= tolerance
            or det.y1 <= tolerance
            or det.x2 >= self.width - tolerance
            or det.y2 >= self.height - tolerance
        )

    def state_data(self) -> dict[str, Any]:
        """Current cumulative counts and zone occupancy."""
        lines: dict[str, Any] = {line.name: {} for line in self.lines}
        lines.update(self.counter.counts.snapshot())
        occupancy = self.zones.occupancy()
        return {
            "camera": self.camera,
            "lines": lines,
            "zones": {name: {"occupancy": sum(by.values()), "by_class": by} for name, by in occupancy.items()},
        }

    def state_if_changed(self) -> State | None:
        """A retained state output when counts or occupancy changed since the last one."""
        data = self.state_data()
        if data == self._last_state:
            return None
        self._last_state = data
        return State(data, key=self.camera)


class TrafficCountingPlugin(Plugin[TrafficCountingOptions]):
    """Counts vehicles (and other classes) crossing lines and occupying zones in camera frames."""

    name = "traffic_counting"
    options_model = TrafficCountingOptions
    input_kind = "frames"

    def __init__(self, options: TrafficCountingOptions, context: PluginContext) -> None:
        super().__init__(options, context)
        self.model = context.models.get(options.model)
        spec = getattr(self.model, "spec", None)
        layout = options.decoder.layout or getattr(spec, "output", None)
        if layout in (None, "raw"):
            raise ValueError(
                f"model {options.model!r} has no detector output layout: set `output` on the model "
                "or `decoder.layout` in the pipeline options"
            )
        if options.decoder.labels is not None:
            labels = LabelMap.load(options.decoder.labels, context.config_dir)
        else:
            labels = LabelMap(getattr(self.model, "labels", None) or [])
        input_spec = options.input or getattr(spec, "input", None)
        self.prepare = FramePreparer(
            tuple(self.model.input_shape),
            colour=getattr(input_spec, "colour", "RGB"),
            mean=getattr(input_spec, "mean", 0.0),
            std=getattr(input_spec, "std", 1.0),
            resize=options.decoder.resize,
            size=getattr(input_spec, "size", None),
            interpolation=options.decoder.interpolation,
        )
        self.decoder = build_decoder(options, str(layout), labels)
        self.labels = labels
        self.scenes: dict[str, CameraScene] = {}
        self.sources: list[CameraSource] = []
        self._lock = threading.Lock()
        if options.classes and len(labels):
            unknown = sorted(set(options.classes) - set(labels.names()))
            if unknown:
                logger.warning("classes not in the model's labels: %s", ", ".join(unknown))

    # ------------------------------------------------------------------ contract

    def model_info(self) -> ModelInfoLike | None:
        info: ModelInfoLike | None = getattr(self.model, "info", None)
        return info

    def start(self) -> None:
        for so in self.options.sources:
            source = CameraSource(
                so.camera,
                so.url,
                self.context.submit,
                fps=so.fps,
                on_state=self._source_state,
                realtime=so.realtime,
                loop=so.loop,
                backoff_initial_s=so.backoff_initial_s,
                backoff_max_s=so.backoff_max_s,
                clock=self.context.clock,
                topic=f"camera/{so.camera}",
                read_timeout_s=so.read_timeout_s,
            )
            self.sources.append(source)
            source.start()

    def close(self) -> None:
        for source in self.sources:
            source.stop()
        self.sources.clear()
        with self._lock:
            for scene in self.scenes.values():
                self._save_counts(scene)
        close = getattr(self.model, "close", None)
        if callable(close):
            close()

    def process(self, message: InputMessage) -> Iterable[Output]:
        if not isinstance(message, Frame):
            raise TypeError(f"traffic_counting takes frames, got {type(message).__name__}")
        with self._lock:
            return self._process(message)

    def summarize(self, start: float, end: float) -> Iterable[Output]:
        with self._lock:
            cameras: dict[str, Any] = {}
            for name, scene in self.scenes.items():
                cameras[name] = {
                    "lines": scene.counter.counts.take_interval(),
                    "zones": scene.zones.take_interval(),
                    "frames": scene.interval_frames,
                    "detector_runs": scene.interval_runs,
                    "frames_gated": scene.interval_frames - scene.interval_runs,
                }
                scene.interval_frames = scene.interval_runs = 0
        return [Summary({"cameras": cameras}, start, end)]

    # ------------------------------------------------------------------ internals

    def _scene(self, frame: Frame) -> CameraScene:
        h, w = frame.image.shape[:2]
        scene = self.scenes.get(frame.camera)
        if scene is not None and (scene.width, scene.height) == (w, h):
            return scene
        previous: dict[str, Any] | None
        if scene is not None:
            logger.warning("camera %s: frame size changed to %dx%d; tracks restart", frame.camera, w, h)
            previous = scene.counter.counts.snapshot()
        else:
            previous = self._load_counts(frame.camera)
        scene = CameraScene(frame.camera, w, h, self.options, self._position_step(w, h))
        if previous:
            scene.counter.counts.restore(previous)
        self.scenes[frame.camera] = scene
        return scene

    def _process(self, frame: Frame) -> list[Output]:
        scene = self._scene(frame)
        ts = frame.ts
        scene.frames += 1
        scene.interval_frames += 1
        outputs: list[Output] = []
        run = scene.gate is None or scene.gate.check(frame.image, ts, tracking=scene.tracking_motion()).run_detector
        detections = None
        if run:
            scene.detector_runs += 1
            scene.interval_runs += 1
            x, geometry = self.prepare(frame.image)
            detections = self.decoder.decode(self.model.run(x), geometry)
        crossings = scene.step(detections, ts)
        for crossing, speed in crossings:
            outputs.append(
                Event(
                    "line_crossing",
                    {
                        "camera": scene.camera,
                        "track_id": crossing.track_id,
                        "class": crossing.label,
                        "line": crossing.line,
                        "direction": crossing.direction,
                        "time": crossing.ts,
                        "confidence": round(crossing.confidence, 4),
                        "speed": speed.value if speed else None,
                        "speed_unit": speed.unit if speed else None,
                    },
                    ts=crossing.ts,
                )
            )
        if crossings:
            self._save_counts(scene)
        state = scene.state_if_changed()
        if state is not None:
            outputs.append(state)
        return outputs

    def _position_step(self, width: int, height: int) -> tuple[float, float] | None:
        """One grid cell in frame pixels for centroid-grid detectors (their positions are that coarse)."""
        if not isinstance(self.decoder, CentroidGridDecoder):
            return None
        outputs = getattr(self.model, "outputs", None)
        shape = tuple(getattr(outputs[0], "shape", ())) if outputs else ()
        if len(shape) != 4 or shape[1] <= 0 or shape[2] <= 0:
            return None
        return width / shape[2], height / shape[1]

    def _load_counts(self, camera: str) -> dict[str, Any] | None:
        try:
            value = self.context.state.get(STATE_KEY_PREFIX + camera)
        except Exception:
            logger.exception("camera %s: saved counts could not be read; starting from zero", camera)
            return None
        return value if isinstance(value, dict) else None

    def _save_counts(self, scene: CameraScene) -> None:
        try:
            self.context.state.put(STATE_KEY_PREFIX + scene.camera, scene.counter.counts.snapshot())
        except Exception:
            logger.exception("camera %s: counts could not be saved", scene.camera)

    def _source_state(self, status: SourceStatus) -> None:
        data = {
            "camera": status.camera,
            "state": status.state.value,
            "frames": status.frames,
            "failures": status.failures,
            "retry_in_s": status.retry_in_s,
            "error": status.error,
        }
        self.context.emit(State(data, key=f"source/{status.camera}"))
