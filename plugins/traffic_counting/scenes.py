"""A synthetic road scene seen from a pole-mounted camera, with exact ground truth.

The scene is a straight road crossing the image horizontally: two lanes towards the left (far side,
top of the image), two lanes towards the right (near side), a sidewalk on each side with people
walking both ways, and bicycles sharing the outer lanes. Vehicles follow the vehicle ahead
(a simple car-following law), and traffic lights can stop each direction, so queues form and
release across the middle of the image (stop-and-go). Static foreground objects (a lamp post, a
tree) occlude parts of the road; lighting drifts and sensor noise is added per frame.

Everything is deterministic given the seed: the dynamics use one random generator and the
rendering another, so rendering at another size never changes what happens in the scene.

Geometry is defined on a 320x240 "world" canvas and scaled to the rendered size. Ground truth is
given in the rendered frame's pixel coordinates:

* per frame, every object at least partly inside the frame, with its persistent id, label, box
  clipped to the frame, the centre of its full (unclipped) box, the fraction of its area inside the
  frame and the fraction not hidden by other objects or by foreground clutter;
* per counting line, every crossing of an object's box centre, with time, label and direction.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)

#: The object classes the scene renders, in label-file order (model class index = position + 1).
LABELS: tuple[str, ...] = ("car", "truck", "bicycle", "person")

WORLD_W = 320.0
WORLD_H = 240.0

_SUBSTEP_S = 1.0 / 30.0
_COMFORT_DECEL = 70.0  # world pixels / s^2
_MAX_DECEL = 250.0

BGR = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CountingLine:
    """A directed segment ``p1 -> p2`` in frame pixels across which crossings are counted.

    The side of a point is the sign of ``cross(p2 - p1, p - p1)`` in image coordinates (x to the
    right, y down). A crossing is ``"in"`` when it ends on the positive side and ``"out"`` when it
    ends on the negative side. For a vertical line from top ``(x, 0)`` to bottom ``(x, h)`` the
    positive side is the left half, so right-to-left motion is ``"in"``.
    """

    name: str
    p1: tuple[float, float]
    p2: tuple[float, float]

    def side(self, x: float, y: float) -> float:
        """Signed distance-like value: > 0 on the "in" side, < 0 on the "out" side."""
        (x1, y1), (x2, y2) = self.p1, self.p2
        return (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)

    def crossed_by(self, a: tuple[float, float], b: tuple[float, float]) -> str | None:
        """The direction in which the step ``a -> b`` crosses the segment, or None."""
        sa, sb = self.side(*a), self.side(*b)
        if sa == 0.0 or (sa > 0) == (sb > 0) or sb == 0.0:
            return None
        # The step must cross the segment itself, not only the infinite line through it.
        seg = CountingLine(self.name, a, b)
        s1, s2 = seg.side(*self.p1), seg.side(*self.p2)
        if s1 != 0.0 and s2 != 0.0 and (s1 > 0) == (s2 > 0):
            return None
        return "in" if sb > 0 else "out"


@dataclass(frozen=True, slots=True)
class GroundTruthObject:
    """One object in one frame, in frame pixel coordinates."""

    object_id: int
    label: str
    box: tuple[float, float, float, float]
    """(x1, y1, x2, y2) clipped to the frame."""
    centre: tuple[float, float]
    """Centre of the full box (may lie outside the frame for an object entering or leaving)."""
    in_frame: float
    """Fraction of the full box area inside the frame."""
    visible: float
    """Fraction of the in-frame silhouette not hidden by objects in front or by foreground clutter."""
    speed: float
    """Speed in frame pixels per second."""

    @property
    def visible_centre(self) -> tuple[float, float]:
        """Centre of the clipped box: where a detector that only sees the frame puts the object."""
        x1, y1, x2, y2 = self.box
        return ((x1 + x2) / 2.0, (y1 + y2) / 2.0)


@dataclass(frozen=True, slots=True)
class Crossing:
    """An object's box centre crossing a counting line."""

    ts: float
    object_id: int
    label: str
    line: str
    direction: str


@dataclass(frozen=True, slots=True)
class SceneFrame:
    """A rendered frame with its ground truth."""

    index: int
    ts: float
    image: np.ndarray[Any, np.dtype[np.uint8]] = field(repr=False)
    objects: tuple[GroundTruthObject, ...]


@dataclass(frozen=True, slots=True)
class SceneConfig:
    """What kind of traffic, clutter and image quality a scene has.

    Rates are mean arrivals per second per lane (Poisson). ``clean()`` and ``busy()`` are the two
    presets used by the demo and the end-to-end checks.
    """

    width: int = 320
    height: int = 240
    vehicle_rate: float = 0.12
    """Arrivals per second per road lane."""
    person_rate: float = 0.05
    """Arrivals per second per sidewalk direction."""
    truck_share: float = 0.15
    bicycle_share: float = 0.1
    """Share of arrivals in the outer road lanes that are bicycles."""
    traffic_lights: bool = False
    """Stop each direction periodically just past the middle of the image (stop-and-go)."""
    clutter: bool = False
    """Foreground lamp post and tree that occlude part of the road."""
    lighting_variation: float = 0.0
    """Amplitude of the slow global brightness drift (0 = constant)."""
    noise_sigma: float = 0.0
    """Standard deviation of per-pixel Gaussian sensor noise (grey levels)."""
    random_look: bool = True
    """Draw the base brightness, colour cast and road/building colours from the seed."""
    warmup_s: float = 20.0
    """Simulated time before the first frame, so the road is already populated."""

    @classmethod
    def clean(cls, **overrides: Any) -> SceneConfig:
        """Free-flowing, sparse traffic without clutter, noise or lighting changes."""
        return replace(cls(vehicle_rate=0.1, person_rate=0.02, random_look=False), **overrides)

    @classmethod
    def busy(cls, **overrides: Any) -> SceneConfig:
        """Dense stop-and-go traffic with occluding clutter, lighting drift and sensor noise."""
        base = cls(
            vehicle_rate=0.22,
            person_rate=0.04,
            truck_share=0.2,
            bicycle_share=0.15,
            traffic_lights=True,
            clutter=True,
            lighting_variation=0.2,
            noise_sigma=6.0,
        )
        return replace(base, **overrides)


@dataclass(slots=True)
class _Lane:
    y: float  # centre line in world pixels
    direction: int  # +1 towards the right, -1 towards the left
    scale: float  # perspective: far lanes are drawn smaller
    kind: str  # "road" or "sidewalk"
    outer: bool  # an outer road lane, shared with bicycles
    stop_x: float | None  # stop line (world x) when traffic lights are on
    next_arrival: float = 0.0


@dataclass(slots=True)
class _Agent:
    object_id: int
    label: str
    lane: int
    x: float  # centre, world pixels
    y: float
    length: float
    height: float
    v: float
    v0: float
    colour: BGR
    colour2: BGR
    style: int
    born: float
    phase: float = 0.0
    committed: bool = False  # passed the point of no return at a turning-red light


@dataclass(slots=True)
class _Light:
    red: bool
    switch_at: float


_CAR_COLOURS: tuple[BGR, ...] = (
    (40, 40, 200),  # red
    (170, 90, 30),  # blue
    (230, 230, 230),  # white
    (185, 185, 185),  # silver
    (35, 35, 35),  # black
    (40, 200, 230),  # yellow
    (60, 130, 60),  # green
    (90, 90, 120),  # brown-grey
    (150, 60, 110),  # purple
)
_TRUCK_COLOURS: tuple[BGR, ...] = ((225, 225, 225), (60, 140, 230), (170, 120, 40), (70, 70, 180), (80, 150, 80))
_CLOTHES: tuple[BGR, ...] = (
    (40, 40, 160),
    (160, 80, 30),
    (30, 30, 30),
    (200, 200, 200),
    (60, 150, 200),
    (90, 60, 50),
    (120, 170, 60),
)
_SKIN: tuple[BGR, ...] = ((150, 180, 220), (110, 140, 190), (70, 100, 140), (50, 70, 100))

# Nominal sizes (world pixels at perspective scale 1) and free speeds (world pixels per second).
_SIZE = {"car": (46.0, 22.0), "truck": (92.0, 32.0), "bicycle": (20.0, 24.0), "person": (9.0, 26.0)}
_SPEED = {"car": (70.0, 130.0), "truck": (55.0, 95.0), "bicycle": (28.0, 45.0), "person": (12.0, 22.0)}


class Scene:
    """A deterministic traffic scene: advance it in time, render frames, read the ground truth."""

    def __init__(self, config: SceneConfig | None = None, seed: int = 0) -> None:
        self.config = config or SceneConfig()
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._render_rng = np.random.default_rng([seed, 1])
        look = np.random.default_rng([seed, 2]) if self.config.random_look else np.random.default_rng(0)
        self._look = look
        self._lanes = self._make_lanes()
        self._agents: list[_Agent] = []
        self._next_id = 1
        self._lights = {d: _Light(red=False, switch_at=float(self._rng.uniform(3, 12))) for d in (-1, 1)}
        self._tracks: dict[int, list[tuple[float, float, float]]] = {}
        self._labels: dict[int, str] = {}
        self._sx = self.config.width / WORLD_W
        self._sy = self.config.height / WORLD_H
        self._background = self._draw_background()
        self._clutter = self._make_clutter()
        self._gain = float(look.uniform(0.6, 1.15)) if self.config.random_look else 1.0
        self._tint = (
            look.uniform(0.9, 1.1, size=3).astype(np.float32) if self.config.random_look else np.ones(3, np.float32)
        )
        self._noise_bank: list[np.ndarray[Any, np.dtype[np.float32]]] = []
        self._light_phase = float(look.uniform(0, 2 * math.pi))
        self.time = 0.0
        for lane in self._lanes:
            lane.next_arrival = float(self._rng.exponential(1.0 / self._rate(lane)))
        self.advance(self.config.warmup_s)
        self.start_time = self.time
        self._frame_index = 0

    # ------------------------------------------------------------------ layout

    def _make_lanes(self) -> list[_Lane]:
        lights = self.config.traffic_lights
        lanes = [
            _Lane(y=74.0, direction=-1, scale=0.7, kind="sidewalk", outer=False, stop_x=None),
            _Lane(y=80.0, direction=1, scale=0.72, kind="sidewalk", outer=False, stop_x=None),
            _Lane(y=100.0, direction=-1, scale=0.78, kind="road", outer=True, stop_x=120.0 if lights else None),
            _Lane(y=126.0, direction=-1, scale=0.85, kind="road", outer=False, stop_x=120.0 if lights else None),
            _Lane(y=156.0, direction=1, scale=0.93, kind="road", outer=False, stop_x=200.0 if lights else None),
            _Lane(y=186.0, direction=1, scale=1.0, kind="road", outer=True, stop_x=200.0 if lights else None),
            _Lane(y=214.0, direction=-1, scale=1.05, kind="sidewalk", outer=False, stop_x=None),
            _Lane(y=222.0, direction=1, scale=1.08, kind="sidewalk", outer=False, stop_x=None),
        ]
        return lanes

    def _rate(self, lane: _Lane) -> float:
        rate = self.config.person_rate if lane.kind == "sidewalk" else self.config.vehicle_rate
        return max(rate, 1e-6)

    # ------------------------------------------------------------------ dynamics

    def advance(self, dt: float) -> None:
        """Move the scene forward by ``dt`` seconds of simulated time."""
        steps = max(1, math.ceil(dt / _SUBSTEP_S - 1e-9))
        h = dt / steps
        for _ in range(steps):
            self._substep(h)

    def _substep(self, h: float) -> None:
        t = self.time + h
        if self.config.traffic_lights:
            for light in self._lights.values():
                if t >= light.switch_at:
                    light.red = not light.red
                    dur = self._rng.uniform(8, 14) if light.red else self._rng.uniform(8, 16)
                    light.switch_at = t + float(dur)
                    if light.red:
                        self._commit_at_red()
        for i, lane in enumerate(self._lanes):
            if t >= lane.next_arrival:
                self._spawn(i, lane)
                lane.next_arrival = t + float(self._rng.exponential(1.0 / self._rate(lane)))
        by_lane: dict[int, list[_Agent]] = {}
        for a in self._agents:
            by_lane.setdefault(a.lane, []).append(a)
        for li, agents in by_lane.items():
            lane = self._lanes[li]
            # Front-most first, so each agent follows its leader's new position.
            agents.sort(key=lambda a: -a.x * lane.direction)
            leader: _Agent | None = None
            for a in agents:
                self._move(a, lane, leader, h)
                leader = a
        self.time = t
        keep: list[_Agent] = []
        for a in self._agents:
            self._tracks[a.object_id].append((t, a.x, a.y))
            gone = a.x - a.length > WORLD_W + 10 if self._lanes[a.lane].direction > 0 else a.x + a.length < -10
            if not gone:
                keep.append(a)
        self._agents = keep

    def _commit_at_red(self) -> None:
        for a in self._agents:
            lane = self._lanes[a.lane]
            if lane.stop_x is None:
                continue
            front = a.x + lane.direction * a.length / 2
            gap = (lane.stop_x - front) * lane.direction
            braking = a.v * a.v / (2 * _MAX_DECEL) + 1.0
            a.committed = gap < braking

    def _move(self, a: _Agent, lane: _Lane, leader: _Agent | None, h: float) -> None:
        d = lane.direction
        front = a.x + d * a.length / 2
        gaps: list[float] = []
        if leader is not None:
            gaps.append((leader.x - d * leader.length / 2 - front) * d)
        stop_line: float | None = None
        if lane.stop_x is not None and self._lights[d].red and not a.committed:
            gap_stop = (lane.stop_x - front) * d
            if gap_stop > -1.0:
                gaps.append(max(gap_stop, 0.0))
                stop_line = lane.stop_x
        if lane.stop_x is not None and not self._lights[d].red:
            a.committed = False
        s0 = 3.0 if lane.kind == "sidewalk" else 5.0 * lane.scale
        v_target = a.v0
        if gaps:
            # The speed from which a comfortable constant deceleration stops exactly s0 short of the
            # obstacle: vehicles come to a real stop in finite time instead of creeping forward.
            room = max(0.0, min(gaps) - s0)
            v_target = min(a.v0, math.sqrt(2.0 * _COMFORT_DECEL * room))
        if a.v < v_target:
            a.v = min(v_target, a.v + (60.0 if a.label != "person" else 40.0) * h)
        else:
            a.v = max(v_target, a.v - _MAX_DECEL * h)
        a.x += d * a.v * h
        if stop_line is not None and (a.x + d * a.length / 2 - stop_line) * d > 0:
            # A red light is a wall for vehicles that could still stop in front of it.
            a.x = stop_line - d * (a.length / 2 + 0.5)
            a.v = 0.0
        if leader is not None:
            # Never overlap the vehicle ahead, whatever the speeds did.
            limit = leader.x - d * (leader.length + a.length) / 2 - d * 1.0
            if (a.x - limit) * d > 0:
                a.x = limit
                a.v = min(a.v, leader.v)
        a.phase += a.v * h

    def _spawn(self, li: int, lane: _Lane) -> None:
        rng = self._rng
        if lane.kind == "sidewalk":
            label = "person"
        else:
            r = rng.uniform()
            if lane.outer and r < self.config.bicycle_share:
                label = "bicycle"
            elif rng.uniform() < self.config.truck_share * (0.5 if lane.outer else 1.5):
                label = "truck"
            else:
                label = "car"
        base_len, base_h = _SIZE[label]
        size_jitter = float(rng.uniform(0.88, 1.12))
        length = base_len * lane.scale * size_jitter
        height = base_h * lane.scale * float(rng.uniform(0.93, 1.07))
        vmin, vmax = _SPEED[label]
        v0 = float(rng.uniform(vmin, vmax)) * lane.scale
        x = -length / 2 - 2 if lane.direction > 0 else WORLD_W + length / 2 + 2
        # The entry must be free; otherwise this arrival is dropped (the queue spills back off-screen).
        v = v0
        for a in self._agents:
            if a.lane != li:
                continue
            gap = abs(a.x - x) - (a.length + length) / 2
            if gap < 8.0:
                return
            if gap < 60.0:
                v = min(v, a.v)
        if label == "person":
            colour = _CLOTHES[int(rng.integers(len(_CLOTHES)))]
            colour2 = _CLOTHES[int(rng.integers(len(_CLOTHES)))]
        elif label == "truck":
            colour = _TRUCK_COLOURS[int(rng.integers(len(_TRUCK_COLOURS)))]
            colour2 = _CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))]
        elif label == "bicycle":
            colour = _CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))]
            colour2 = _CLOTHES[int(rng.integers(len(_CLOTHES)))]
        else:
            colour = _CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))]
            colour2 = colour
        y_jitter = float(rng.uniform(-1.5, 1.5)) if lane.kind == "road" else float(rng.uniform(-1.0, 1.0))
        agent = _Agent(
            object_id=self._next_id,
            label=label,
            lane=li,
            x=x,
            y=lane.y + y_jitter,
            length=length,
            height=height,
            v=v,
            v0=v0,
            colour=colour,
            colour2=colour2,
            style=int(rng.integers(3)),
            born=self.time,
            phase=float(rng.uniform(0, 20)),
        )
        self._next_id += 1
        self._agents.append(agent)
        self._tracks[agent.object_id] = [(self.time, agent.x, agent.y)]
        self._labels[agent.object_id] = label

    # ------------------------------------------------------------------ ground truth

    def _box(self, a: _Agent) -> tuple[float, float, float, float]:
        """Full box in frame pixels, centred on the agent's position."""
        x1 = (a.x - a.length / 2) * self._sx
        x2 = (a.x + a.length / 2) * self._sx
        y1 = (a.y - a.height * 0.5) * self._sy
        y2 = (a.y + a.height * 0.5) * self._sy
        return (x1, y1, x2, y2)

    def objects(self) -> list[GroundTruthObject]:
        """Objects at least partly inside the frame now, without occlusion (``visible`` = 1)."""
        return [o for o, _ in self._objects_with_agents(None)]

    def _objects_with_agents(self, visible: dict[int, float] | None) -> list[tuple[GroundTruthObject, _Agent]]:
        w, h = self.config.width, self.config.height
        out: list[tuple[GroundTruthObject, _Agent]] = []
        for a in self._draw_order():
            x1, y1, x2, y2 = self._box(a)
            area = (x2 - x1) * (y2 - y1)
            cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
            if cx2 <= cx1 or cy2 <= cy1:
                continue
            inside = (cx2 - cx1) * (cy2 - cy1) / area
            obj = GroundTruthObject(
                object_id=a.object_id,
                label=a.label,
                box=(cx1, cy1, cx2, cy2),
                centre=((x1 + x2) / 2, (y1 + y2) / 2),
                in_frame=inside,
                visible=1.0 if visible is None else visible.get(a.object_id, 0.0),
                speed=a.v * self._sx,
            )
            out.append((obj, a))
        return out

    def trajectory(self, object_id: int) -> list[tuple[float, float, float]]:
        """(time, centre x, centre y) of an object at every simulation step, in frame pixels."""
        pts = self._tracks[object_id]
        return [(t, x * self._sx, y * self._sy) for t, x, y in pts]

    def crossings(self, line: CountingLine, since: float | None = None) -> list[Crossing]:
        """Every crossing of ``line`` by an object's box centre after ``since`` (default: the first frame)."""
        start = self.start_time if since is None else since
        out: list[Crossing] = []
        for oid, pts in self._tracks.items():
            label = self._labels[oid]
            prev: tuple[float, float] | None = None
            for t, x, y in pts:
                cur = (x * self._sx, y * self._sy)
                if prev is not None and t > start:
                    direction = line.crossed_by(prev, cur)
                    if direction is not None:
                        out.append(Crossing(t, oid, label, line.name, direction))
                prev = cur
        out.sort(key=lambda c: (c.ts, c.object_id))
        return out

    def counts(self, line: CountingLine, since: float | None = None) -> dict[str, dict[str, int]]:
        """Crossing counts per label and direction (``{"car": {"in": 3, "out": 5}, ...}``)."""
        table = {label: {"in": 0, "out": 0} for label in LABELS}
        for c in self.crossings(line, since):
            table[c.label][c.direction] += 1
        return table

    # ------------------------------------------------------------------ rendering

    def _draw_order(self) -> list[_Agent]:
        # Far (small y) first, so nearer objects are drawn over them.
        return sorted(self._agents, key=lambda a: (a.y, a.object_id))

    def _p(self, x: float, y: float) -> tuple[int, int]:
        return (int(round(x * self._sx)), int(round(y * self._sy)))

    def _draw_background(self) -> np.ndarray[Any, np.dtype[np.uint8]]:
        look = self._look
        w, h = self.config.width, self.config.height
        img = np.zeros((h, w, 3), np.uint8)
        sx, sy = self._sx, self._sy

        def rect(x1: float, y1: float, x2: float, y2: float, c: Sequence[float] | np.ndarray[Any, Any]) -> None:
            cv2.rectangle(
                img,
                (int(x1 * sx), int(y1 * sy)),
                (int(x2 * sx) - 1, int(y2 * sy) - 1),
                tuple(int(v) for v in c),
                -1,
            )

        # Far side: grass strip and buildings with windows.
        grass = np.array([60, 120, 70]) + look.integers(-15, 16, 3)
        rect(0, 0, WORLD_W, 70, grass)
        x = -look.uniform(0, 30)
        while x < WORLD_W:
            bw = float(look.uniform(40, 90))
            top = float(look.uniform(0, 25))
            colour = look.integers(70, 200, 3)
            rect(x, top, x + bw - 3, 62, colour)
            win = np.clip(colour.astype(int) + look.integers(-60, 40), 20, 240)
            for wy in np.arange(top + 5, 56, 11):
                for wx in np.arange(x + 5, x + bw - 10, 12):
                    rect(wx, wy, wx + 6, wy + 6, win)
            x += bw
        # Sidewalks, kerbs and road.
        pave = np.array([165, 165, 160]) + look.integers(-25, 26)
        road = np.array([85, 85, 88]) + look.integers(-25, 26)
        rect(0, 66, WORLD_W, 88, pave)
        rect(0, 200, WORLD_W, WORLD_H, pave)
        rect(0, 88, WORLD_W, 200, road)
        for tx in range(0, int(WORLD_W), 16):
            cv2.line(img, self._p(tx, 66), self._p(tx, 88), tuple(int(v) - 20 for v in pave), 1)
            cv2.line(img, self._p(tx, 200), self._p(tx, WORLD_H), tuple(int(v) - 20 for v in pave), 1)
        kerb = tuple(int(v) for v in np.clip(pave + 30, 0, 255))
        cv2.line(img, self._p(0, 88), self._p(WORLD_W, 88), kerb, max(1, int(2 * sy)))
        cv2.line(img, self._p(0, 200), self._p(WORLD_W, 200), kerb, max(1, int(2 * sy)))
        # Lane markings: double yellow in the middle, white dashes between same-direction lanes.
        for yy in (139.0, 142.0):
            cv2.line(img, self._p(0, yy), self._p(WORLD_W, yy), (40, 190, 220), max(1, int(sy)))
        for yy in (114.0, 171.0):
            for dx in range(0, int(WORLD_W), 28):
                cv2.line(img, self._p(dx, yy), self._p(dx + 14, yy), (220, 220, 220), max(1, int(sy)))
        if self.config.traffic_lights:
            cv2.line(img, self._p(120, 89), self._p(120, 139), (230, 230, 230), max(1, int(2 * sx)))
            cv2.line(img, self._p(200, 143), self._p(200, 199), (230, 230, 230), max(1, int(2 * sx)))
        # Static texture: stains and patches on the asphalt, so the background is not flat.
        for _ in range(int(look.integers(6, 14))):
            cx, cy = look.uniform(0, WORLD_W), look.uniform(90, 198)
            axes = (max(1, int(look.uniform(4, 14) * sx)), max(1, int(look.uniform(2, 5) * sy)))
            shade = tuple(int(v) for v in np.clip(road + look.integers(-18, 18), 0, 255))
            cv2.ellipse(img, self._p(cx, cy), axes, 0, 0, 360, shade, -1)
        tex = look.normal(0, 4, size=img.shape)
        return np.clip(img.astype(np.float32) + tex, 0, 255).astype(np.uint8)

    def _make_clutter(self) -> list[tuple[str, float, float]]:
        if not self.config.clutter:
            return []
        rng = np.random.default_rng([self.seed, 3])
        return [("post", float(rng.uniform(30, 110)), 0.0), ("tree", float(rng.uniform(220, 300)), 0.0)]

    def _draw_clutter(self, img: np.ndarray[Any, np.dtype[Any]], value: Any | None) -> None:
        for kind, x, _ in self._clutter:
            if kind == "post":
                c = (70, 70, 75) if value is None else value
                cv2.rectangle(img, self._p(x - 2.5, 120), self._p(x + 2.5, 226), c, -1)
                cv2.rectangle(img, self._p(x - 2.5, 118), self._p(x + 26, 122), c, -1)
            else:
                trunk = (40, 60, 90) if value is None else value
                leaves = (40, 110, 50) if value is None else value
                cv2.rectangle(img, self._p(x - 3, 196), self._p(x + 3, 230), trunk, -1)
                cv2.circle(img, self._p(x, 186), int(20 * self._sx), leaves, -1)
                cv2.circle(img, self._p(x - 14, 194), int(13 * self._sx), leaves, -1)
                cv2.circle(img, self._p(x + 13, 196), int(12 * self._sx), leaves, -1)

    def _draw_agent(self, img: np.ndarray[Any, np.dtype[np.uint8]], a: _Agent, night: bool) -> None:
        d = self._lanes[a.lane].direction
        x1, y1, x2, y2 = self._box(a)
        L, H = x2 - x1, y2 - y1

        def P(fx: float, fy: float) -> tuple[int, int]:
            # (fx, fy) in box fractions; fx = 0 is the back, 1 the front of the object.
            xx = x1 + (fx if d > 0 else 1 - fx) * L
            return (int(round(xx)), int(round(y1 + fy * H)))

        def R(fx1: float, fy1: float, fx2: float, fy2: float, c: BGR) -> None:
            (ax, ay), (bx, by) = P(fx1, fy1), P(fx2, fy2)
            cv2.rectangle(img, (min(ax, bx), ay), (max(ax, bx) - 1, by - 1), c, -1)

        dark = (25, 25, 25)
        glass = (110, 95, 80) if not night else (60, 50, 45)
        if a.label == "car":
            body = a.colour
            R(0.0, 0.42, 1.0, 0.84, body)
            roof = tuple(int(v * 0.85) for v in body)
            cabin_back, cabin_front = (0.18, 0.72) if a.style != 1 else (0.12, 0.62)
            pts = np.array(
                [P(cabin_back, 0.45), P(cabin_back + 0.06, 0.0), P(cabin_front - 0.1, 0.0), P(cabin_front, 0.45)]
            )
            cv2.fillConvexPoly(img, pts, roof)
            pts = np.array(
                [
                    P(cabin_back + 0.05, 0.42),
                    P(cabin_back + 0.09, 0.1),
                    P(cabin_front - 0.12, 0.1),
                    P(cabin_front - 0.04, 0.42),
                ]
            )
            cv2.fillConvexPoly(img, pts, glass)
            for fx in (0.2, 0.8):
                cx, cy = P(fx, 0.84)
                cv2.circle(img, (cx, cy), max(1, int(0.17 * H)), dark, -1)
            R(0.95, 0.5, 1.0, 0.62, (120, 230, 250) if not night else (200, 255, 255))
            R(0.0, 0.5, 0.04, 0.62, (30, 30, 190))
        elif a.label == "truck":
            cab = a.colour2
            box = a.colour
            R(0.0, 0.0, 0.74, 0.84, box)
            R(0.02, 0.05, 0.72, 0.1, tuple(int(v * 0.8) for v in box))
            R(0.76, 0.22, 1.0, 0.84, cab)
            R(0.8, 0.3, 0.97, 0.52, glass)
            R(0.72, 0.7, 0.78, 0.8, dark)
            for fx in (0.12, 0.26, 0.86):
                cx, cy = P(fx, 0.86)
                cv2.circle(img, (cx, cy), max(1, int(0.14 * H)), dark, -1)
            R(0.97, 0.6, 1.0, 0.7, (120, 230, 250))
        elif a.label == "bicycle":
            r = max(1, int(0.2 * H))
            wb, wf = P(0.18, 0.8), P(0.82, 0.8)
            frame = a.colour
            cv2.circle(img, wb, r, dark, max(1, int(0.07 * H)))
            cv2.circle(img, wf, r, dark, max(1, int(0.07 * H)))
            seat, bar = P(0.38, 0.5), P(0.72, 0.45)
            thick = max(1, int(0.06 * H))
            cv2.line(img, wb, seat, frame, thick)
            cv2.line(img, seat, bar, frame, thick)
            cv2.line(img, bar, wf, frame, thick)
            cv2.line(img, wb, P(0.5, 0.8), frame, thick)
            cv2.line(img, P(0.5, 0.8), seat, frame, thick)
            # Rider.
            skin = _SKIN[a.style % len(_SKIN)]
            hip, shoulder = P(0.38, 0.45), P(0.56, 0.16)
            cv2.line(img, hip, shoulder, a.colour2, max(1, int(0.16 * H)))
            cv2.line(img, shoulder, bar, a.colour2, max(1, int(0.06 * H)))
            knee = P(0.52 + 0.06 * math.sin(a.phase * 0.3), 0.6)
            cv2.line(img, hip, knee, (60, 50, 40), max(1, int(0.08 * H)))
            cv2.line(img, knee, P(0.5, 0.8), (60, 50, 40), max(1, int(0.06 * H)))
            cv2.circle(img, P(0.6, 0.08), max(1, int(0.09 * H)), skin, -1)
        else:  # person
            skin = _SKIN[a.style % len(_SKIN)]
            swing = 0.35 * math.sin(a.phase * 0.5)
            hip = P(0.5, 0.55)
            cv2.line(img, hip, P(0.5 + swing, 1.0), (50, 45, 40), max(1, int(0.25 * L)))
            cv2.line(img, hip, P(0.5 - swing, 1.0), (70, 60, 50), max(1, int(0.25 * L)))
            R(0.1, 0.18, 0.9, 0.58, a.colour)
            cv2.line(img, P(0.5, 0.22), P(0.5 + 0.8 * swing, 0.52), a.colour, max(1, int(0.2 * L)))
            cv2.circle(img, P(0.5, 0.09), max(1, int(0.1 * H)), skin, -1)

    def _silhouette(
        self, buf: np.ndarray[Any, np.dtype[Any]], a: _Agent, value: int, origin: tuple[int, int] = (0, 0)
    ) -> None:
        x1, y1, x2, y2 = self._box(a)
        ox, oy = origin
        x1, x2, y1, y2 = x1 - ox, x2 - ox, y1 - oy, y2 - oy
        if a.label in ("car", "truck"):
            cv2.rectangle(buf, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), value, -1)
        else:
            cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
            axes = (max(1, int((x2 - x1) / 2)), max(1, int((y2 - y1) / 2)))
            cv2.ellipse(buf, (cx, cy), axes, 0, 0, 360, value, -1)

    def _visibility(self) -> dict[int, float]:
        h, w = self.config.height, self.config.width
        buf = np.zeros((h, w), np.uint16)
        order = self._draw_order()
        ids = {a.object_id: i + 1 for i, a in enumerate(order)}
        full: dict[int, int] = {}
        for a in order:
            # The unoccluded in-frame silhouette area, drawn into a buffer the size of the clipped box.
            x1, y1, x2, y2 = self._box(a)
            bx1, by1 = max(int(x1), 0), max(int(y1), 0)
            bx2, by2 = min(int(x2) + 1, w), min(int(y2) + 1, h)
            if bx2 <= bx1 or by2 <= by1:
                full[a.object_id] = 0
                continue
            local = np.zeros((by2 - by1, bx2 - bx1), np.uint8)
            self._silhouette(local, a, 1, (bx1, by1))
            full[a.object_id] = int(np.count_nonzero(local))
            self._silhouette(buf, a, ids[a.object_id])
        self._draw_clutter(buf, 0)
        counts = np.bincount(buf.ravel(), minlength=len(order) + 1)
        return {
            a.object_id: (min(1.0, float(counts[ids[a.object_id]]) / full[a.object_id]) if full[a.object_id] else 0.0)
            for a in order
        }

    def render(self) -> SceneFrame:
        """Render the current state and return it with its ground truth; does not advance time."""
        night = self._gain < 0.7
        img = self._background.copy()
        for a in self._draw_order():
            self._draw_agent(img, a, night)
        self._draw_clutter(img, None)
        visible = self._visibility()
        objects = tuple(o for o, _ in self._objects_with_agents(visible))
        cfg = self.config
        gain = self._gain
        if cfg.lighting_variation > 0:
            gain *= 1.0 + cfg.lighting_variation * math.sin(2 * math.pi * self.time / 47.0 + self._light_phase)
        needs_float = gain != 1.0 or cfg.noise_sigma > 0 or not np.allclose(self._tint, 1.0)
        if needs_float:
            f = img.astype(np.float32) * (self._tint * gain)
            if cfg.noise_sigma > 0:
                f += self._noise_field()
            img = np.clip(f, 0, 255).astype(np.uint8)
        frame = SceneFrame(index=self._frame_index, ts=self.time, image=img, objects=objects)
        self._frame_index += 1
        return frame

    def _noise_field(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        # Drawing fresh Gaussian noise for every pixel costs more than the rest of the rendering;
        # a small bank of fields, rolled by a random offset, looks the same to a detector.
        if not self._noise_bank:
            shape = (self.config.height, self.config.width, 3)
            self._noise_bank = [
                self._render_rng.normal(0.0, self.config.noise_sigma, size=shape).astype(np.float32) for _ in range(4)
            ]
        field_ = self._noise_bank[int(self._render_rng.integers(len(self._noise_bank)))]
        dy, dx = (int(v) for v in self._render_rng.integers(0, (self.config.height, self.config.width)))
        return np.roll(field_, (dy, dx), axis=(0, 1))

    def frames(self, count: int, fps: float) -> Iterator[SceneFrame]:
        """Render ``count`` frames ``1/fps`` seconds apart, starting with the current state."""
        for i in range(count):
            if i:
                self.advance(1.0 / fps)
            yield self.render()


def vertical_line(config: SceneConfig, fraction: float = 0.5, name: str = "middle") -> CountingLine:
    """A full-height counting line at ``fraction`` of the width, drawn top to bottom.

    With this orientation right-to-left traffic (the far lanes) counts as ``"in"``, left-to-right
    traffic (the near lanes) as ``"out"``.
    """
    x = config.width * fraction
    return CountingLine(name, (x, 0.0), (x, float(config.height)))
