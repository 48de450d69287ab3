"""Options of the ``traffic_counting`` plugin (the ``options:`` of a pipeline entry).

Every field has a title and a description, so the generated JSON schema is the reference of what a
pipeline entry accepts. Lines, zones and regions of interest are in frame pixels, or in ``[0, 1]``
fractions of the frame size with ``units: normalised``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.inference.spec import InputSpec
from gateway.plugin import PluginOptions
from plugins.traffic_counting.geometry import AnchorName

PointOption = tuple[float, float]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LineOptions(_Section):
    """A counting line: a segment with a user-named direction for each way across."""

    name: str = Field(title="Name", description="Unique name of the line (used in events, state and summaries).")
    points: tuple[PointOption, PointOption] = Field(
        title="End points",
        description="[[x1, y1], [x2, y2]]. Crossing from the left-hand to the right-hand side of the "
        "line drawn from the first to the second point (as seen on the image) is the `in` direction.",
    )
    in_name: str = Field(default="in", title="Name of the in direction", description="e.g. `northbound`.")
    out_name: str = Field(default="out", title="Name of the out direction", description="e.g. `southbound`.")
    classes: list[str] | None = Field(
        default=None, title="Classes", description="Classes counted on this line (default: every tracked class)."
    )
    margin: float | None = Field(
        default=None,
        ge=0,
        title="Hysteresis margin (px)",
        description="How far past the line an object must get before it counts (default: `line_margin`).",
    )

    @model_validator(mode="after")
    def _directions_differ(self) -> LineOptions:
        if self.in_name == self.out_name:
            raise ValueError("in_name and out_name must differ")
        if self.points[0] == self.points[1]:
            raise ValueError("the two points of a line must differ")
        return self


class ZoneOptions(_Section):
    """A polygon zone whose occupancy and dwell times are reported."""

    name: str = Field(title="Name", description="Unique name of the zone.")
    points: list[PointOption] = Field(min_length=3, title="Polygon", description="[[x, y], ...], at least 3 points.")
    classes: list[str] | None = Field(
        default=None, title="Classes", description="Classes counted in this zone (default: every tracked class)."
    )


class DecoderOptions(_Section):
    """How the detector's outputs are read."""

    layout: Literal["ssd_postprocessed", "yolo", "centroid_grid"] | None = Field(
        default=None,
        title="Output layout",
        description="Detector output layout; default: the `output` of the model's entry in `models:`.",
    )
    labels: list[str] | str | None = Field(
        default=None,
        title="Labels",
        description="Class names or a label file; default: the model's own labels.",
    )
    label_offset: int = Field(
        default=0,
        title="Label offset",
        description="Added to class ids before looking up names (1 for label maps that start with a "
        "background entry the model does not output).",
    )
    resize: Literal["stretch", "letterbox"] = Field(
        default="stretch",
        title="Resize mode",
        description="`stretch` for SSD/EfficientDet and most TFLite detectors; `letterbox` for YOLO exports.",
    )
    interpolation: Literal["linear", "area"] = Field(
        default="linear",
        title="Resize interpolation",
        description="`linear` (fast) or `area` (what models trained on area-downscaled images expect; "
        "several times slower at non-integer ratios).",
    )
    iou_threshold: float = Field(
        default=0.45, gt=0, le=1, title="NMS IoU (yolo)", description="Boxes overlapping more are suppressed."
    )
    normalised_boxes: bool | None = Field(
        default=None,
        title="Normalised boxes (yolo)",
        description="Whether YOLO boxes are in [0, 1] (true) or input pixels (false); default: guessed.",
    )
    grid_threshold: float = Field(
        default=0.5, gt=0, le=1, title="Cell threshold (centroid_grid)", description="Minimum class probability."
    )
    grid_grouping: Literal["components", "peaks"] = Field(
        default="components",
        title="Cell grouping (centroid_grid)",
        description="`components`: one object per blob; `peaks`: one per local maximum (dense traffic).",
    )
    grid_box_size: PointOption | dict[str, PointOption] | None = Field(
        default=None,
        title="Nominal box size (centroid_grid)",
        description="[w, h] in model input pixels (or per class); default: the blob's extent.",
    )


class TrackerOptions(_Section):
    """Multi-object tracker thresholds (ByteTrack-style two-stage association)."""

    low_score: float = Field(
        default=0.15,
        ge=0,
        le=1,
        title="Low score",
        description="Detections between this and `score_threshold` only keep existing tracks alive.",
    )
    new_track_score: float | None = Field(
        default=None, title="New track score", description="Score to start a track (default: `score_threshold`)."
    )
    match_iou: float = Field(default=0.2, gt=0, le=1, title="Match IoU", description="Minimum overlap to match.")
    centre_gate: float = Field(
        default=1.0,
        ge=0,
        title="Centre gate",
        description="Non-overlapping boxes still match when their centres are within this many box "
        "diagonals (after motion prediction): keeps ids at low frame rates.",
    )
    min_hits: int = Field(
        default=2, ge=1, title="Hits to confirm", description="Observations before a track is trusted and counted."
    )
    max_lost_s: float = Field(
        default=2.0, gt=0, title="Max lost time (s)", description="How long an unseen track is kept (occlusions)."
    )
    max_lost_frames: int = Field(
        default=30, ge=1, title="Max lost detector runs", description="Detector runs an unseen track is kept."
    )
    lane_refind: bool = Field(
        default=True,
        title="Re-find along the path",
        description="A lost track is found again further along its path than it coasted (a vehicle that "
        "pulled away behind an occluder), by class and size across the path, within twice its speed.",
    )


class MotionOptions(_Section):
    """Motion gating: skip the detector while the scene is still."""

    enabled: bool = Field(default=True, title="Enabled", description="Run the detector only on motion.")
    method: Literal["diff", "mog2"] = Field(
        default="diff", title="Method", description="`diff`: frame differencing; `mog2`: background model."
    )
    width: int = Field(default=160, ge=32, title="Analysis width (px)", description="Frames are downscaled to this.")
    min_motion: float = Field(
        default=0.002,
        ge=0,
        le=1,
        title="Minimum motion",
        description="Fraction of changed pixels that counts as motion.",
    )
    pixel_threshold: int = Field(
        default=8, ge=1, le=255, title="Pixel threshold", description="Grey-level change that counts (diff)."
    )
    tail_frames: int = Field(
        default=2, ge=0, title="Tail frames", description="Frames still analysed after motion stops."
    )
    refresh_s: float = Field(
        default=5.0, gt=0, title="Refresh (s)", description="Run the detector at least this often anyway."
    )


class SpeedOptions(_Section):
    """Speed estimate of counted objects."""

    enabled: bool = Field(default=True, title="Enabled", description="Add speed to crossing events.")
    window_s: float = Field(default=1.0, gt=0, title="Window (s)", description="Averaging window.")
    metres_per_pixel: float | None = Field(
        default=None, gt=0, title="Metres per pixel", description="Ground scale for a top-down camera (m/s output)."
    )
    homography: list[list[float]] | None = Field(
        default=None,
        title="Homography",
        description="3x3 matrix mapping image pixels to ground-plane metres (m/s output at any camera angle).",
    )

    @field_validator("homography")
    @classmethod
    def _three_by_three(cls, value: list[list[float]] | None) -> list[list[float]] | None:
        if value is not None and (len(value) != 3 or any(len(r) != 3 for r in value)):
            raise ValueError("homography must be a 3x3 matrix")
        return value


class SourceOptions(_Section):
    """A camera read directly through OpenCV (instead of frames published over MQTT)."""

    camera: str = Field(title="Camera name", description="Name carried by frames, events and state.")
    url: str = Field(
        title="Source",
        description="rtsp:// or http(s):// URL, V4L2 device (/dev/video0 or 0) or a video file path.",
    )
    fps: float = Field(default=5.0, gt=0, title="Target fps", description="Frames per second handed to the pipeline.")
    realtime: bool = Field(
        default=True, title="Real-time files", description="Pace video files at `fps` (false: replay at full speed)."
    )
    loop: bool = Field(default=False, title="Loop files", description="Restart a video file at its end.")
    backoff_initial_s: float = Field(default=1.0, gt=0, title="First retry (s)", description="Reconnect delay.")
    backoff_max_s: float = Field(default=30.0, gt=0, title="Max retry (s)", description="Reconnect delay cap.")
    read_timeout_s: float = Field(
        default=10.0,
        gt=0,
        title="Network timeout (s)",
        description="A network camera silent this long is reconnected.",
    )


class TrafficCountingOptions(PluginOptions):
    """Options of the ``traffic_counting`` plugin."""

    model: str = Field(title="Model", description="Name of the detector in the config's `models:` section.")
    decoder: DecoderOptions = Field(
        default_factory=DecoderOptions, title="Decoder", description="How detector outputs are read."
    )
    input: InputSpec | None = Field(
        default=None,
        title="Input preparation",
        description="Colour order and normalisation of the model input; default: the model's `input`.",
    )
    classes: list[str] | None = Field(
        default=None,
        title="Classes",
        description="Classes tracked (e.g. [car, truck, bus, motorcycle, bicycle]); default: all.",
    )
    score_threshold: float = Field(
        default=0.5, ge=0, le=1, title="Score threshold", description="Detections this confident start tracks."
    )
    class_thresholds: dict[str, float] = Field(
        default_factory=dict,
        title="Per-class thresholds",
        description="Detections of a class below its threshold are dropped entirely.",
    )
    units: Literal["pixels", "normalised"] = Field(
        default="pixels",
        title="Coordinate units",
        description="Units of line, zone and ROI points: frame pixels or [0, 1] fractions of the frame.",
    )
    anchor: AnchorName = Field(
        default="bottom_centre",
        title="Anchor point",
        description="Point of the box that crosses lines and sits in zones.",
    )
    roi: list[list[PointOption]] = Field(
        default_factory=list,
        title="Regions of interest",
        description="Polygons; detections anchored outside all of them are ignored (none: whole frame).",
    )
    lines: list[LineOptions] = Field(default_factory=list, title="Counting lines", description="Directed lines.")
    line_margin: float = Field(
        default=6.0, ge=0, title="Line margin (px)", description="Default hysteresis margin of the lines."
    )
    count_returns: bool = Field(
        default=True,
        title="Count returns",
        description="Count a track that crosses a line and comes back in the other direction (once "
        "per direction, and only once its anchor is half the object's extent across the line past "
        "it, so a long vehicle's detections hopping on the line do not count). Turn off where "
        "objects never turn back over a line, so a track that took over a queued neighbour's "
        "identity cannot count the way back.",
    )
    zones: list[ZoneOptions] = Field(default_factory=list, title="Zones", description="Occupancy zones.")
    tracker: TrackerOptions = Field(default_factory=TrackerOptions, title="Tracker", description="Tracking.")
    motion: MotionOptions = Field(default_factory=MotionOptions, title="Motion gating", description="Gating.")
    speed: SpeedOptions = Field(default_factory=SpeedOptions, title="Speed", description="Speed estimate.")
    sources: list[SourceOptions] = Field(
        default_factory=list,
        title="Camera sources",
        description="Cameras read directly; their frames join those arriving over MQTT.",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> TrafficCountingOptions:
        for what, names in (
            ("line", [line.name for line in self.lines]),
            ("zone", [z.name for z in self.zones]),
            ("source camera", [s.camera for s in self.sources]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {what} names: {', '.join(dupes)}")
        if self.tracker.low_score > self.score_threshold:
            raise ValueError("tracker.low_score must not exceed score_threshold")
        return self
