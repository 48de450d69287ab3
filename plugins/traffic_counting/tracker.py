"""Multi-object tracking of detections across frames, built for low frame rates and stop-and-go traffic.

The association follows ByteTrack: high-score detections are matched first against every confirmed
track (including lost ones), then the low-score detections a partly occluded vehicle produces keep
the remaining tracked objects alive, then leftover high-score detections confirm tentative tracks or
start new ones. A track becomes confirmed after ``min_hits`` observations; only confirmed tracks
are counted downstream. Lost tracks are kept ``max_lost_s`` seconds so short occlusions do not
change an object's id.

Additions for edge cameras:

- Low frame rates: boxes of a fast vehicle may not overlap from one frame to the next, so pairs
  are also accepted when their centres are within ``centre_gate`` box sizes (after a
  constant-velocity Kalman prediction that uses the real time between frames).
- Stop-and-go: a braking vehicle's prediction overshoots; slow tracks are also compared with their
  last observed box and the better of the two is used, and low-score detections keep tracks that
  were just lost alive.
- Coarse detectors (a centroid grid places objects to within a cell): a lost track coasts at its mean
  velocity over the last two seconds, not at the filter's jumpy one, so objects merged into one
  detection for a moment come out of it on their own tracks; a lost track that only ever took turns
  with a live track of its class on the same object is dropped as its double.
- Occluders: a vehicle that pulls away while hidden comes out ahead of every gate; a detection that
  would start a track is first offered to the lost tracks whose path it lies on (``lane_refind``).

No external tracking library is used: the ones that implement ByteTrack pull in scipy, PyTorch or
``lap``, which are heavy or unavailable on 32-bit Raspberry Pi OS. Assignment is greedy by cost,
which for the tens of objects in a traffic scene gives the same pairs as an optimal solver in all but
contrived cases.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from plugins.traffic_counting.decoders import Detection
from plugins.traffic_counting.geometry import FloatArray, centre_distance_matrix, iou_matrix

logger = logging.getLogger(__name__)


class TrackState(str, Enum):
    """Life cycle of a track."""

    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    LOST = "lost"
    REMOVED = "removed"


class BoxKalman:
    """Constant-velocity Kalman filter over ``(cx, cy, w, h)`` with time steps in seconds.

    Noise scales with the box height, so near (large) and far (small) vehicles are treated alike.
    With diagonal noise and a state of (value, rate) pairs the covariance never couples the four
    coordinates, so the filter runs as four independent two-state filters on plain floats: the
    same result as the 8x8 matrix form, at a fraction of the cost on a small CPU.
    """

    __slots__ = ("x", "v", "p00", "p01", "p11")

    # Standard deviations, as fractions of the box height: measurement of (cx, cy, w, h), initial
    # rate uncertainty, process noise of values and rates (per second).
    _MEAS = (0.05, 0.05, 0.1, 0.1)
    _INIT_RATE = (3.0, 3.0, 0.5, 0.5)
    _Q_VALUE = 0.05
    _Q_RATE = (1.5, 1.5, 0.75, 0.75)

    def __init__(self, box: Sequence[float]) -> None:
        z = _to_cxcywh(box)
        s = max(z[3], 1.0)
        self.x = list(z)
        self.v = [0.0, 0.0, 0.0, 0.0]
        self.p00 = [(0.1 * s) ** 2] * 4
        self.p01 = [0.0] * 4
        self.p11 = [(r * s) ** 2 for r in self._INIT_RATE]

    def predict(self, dt: float) -> None:
        """Advance the state by ``dt`` seconds."""
        if dt <= 0:
            return
        s = max(self.x[3], 1.0)
        q_value = (self._Q_VALUE * s) ** 2 * dt
        for i in range(4):
            self.x[i] += self.v[i] * dt
            p00, p01, p11 = self.p00[i], self.p01[i], self.p11[i]
            self.p00[i] = p00 + 2 * dt * p01 + dt * dt * p11 + q_value
            self.p01[i] = p01 + dt * p11
            self.p11[i] = p11 + (self._Q_RATE[i] * s) ** 2 * dt
        self.x[2] = max(self.x[2], 1.0)
        self.x[3] = max(self.x[3], 1.0)

    def update(self, box: Sequence[float]) -> None:
        """Correct the state with an observed box."""
        z = _to_cxcywh(box)
        s = max(z[3], 1.0)
        for i in range(4):
            p00, p01, p11 = self.p00[i], self.p01[i], self.p11[i]
            innovation_var = p00 + (self._MEAS[i] * s) ** 2
            k0, k1 = p00 / innovation_var, p01 / innovation_var
            residual = z[i] - self.x[i]
            self.x[i] += k0 * residual
            self.v[i] += k1 * residual
            self.p00[i] = (1 - k0) * p00
            self.p01[i] = (1 - k0) * p01
            self.p11[i] = p11 - k1 * p01

    def stop(self) -> None:
        """Zero the velocity (the scene was seen to be still)."""
        self.v = [0.0, 0.0, 0.0, 0.0]

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Current estimate as ``(x1, y1, x2, y2)``."""
        cx, cy, w, h = self.x
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)

    @property
    def velocity(self) -> tuple[float, float]:
        """Centre velocity in pixels per second."""
        return self.v[0], self.v[1]


def _is_slow(track: Track) -> bool:
    """Moving less than half its own width per second (for a lost track, at its mean velocity)."""
    v = track.mean_velocity() if track.misses else None
    vx, vy = v if v is not None else track.kalman.velocity
    x1, _, x2, _ = track.box
    return bool(np.hypot(vx, vy) < 0.5 * max(x2 - x1, 1.0))


def _one_object_seen_twice(a: Track, b: Track, window_s: float = 2.0) -> bool:
    """Whether two tracks are one object fed to both by turns: over the last ``window_s`` they were
    never observed in the same frame and moved alike. Two objects are seen together most of the time,
    and two passing each other move apart."""
    va, vb = a.mean_velocity(window_s), b.mean_velocity(window_s)
    if va is None or vb is None:
        return False
    since = max(a.last_ts, b.last_ts) - window_s
    if {t for t, _, _ in a.seen if t >= since} & {t for t, _, _ in b.seen if t >= since}:
        return False
    x1, y1, x2, y2 = a.box
    tolerance = 0.25 * (np.hypot(*va) + np.hypot(*vb)) + 0.25 * max(x2 - x1, y2 - y1)
    return bool(np.hypot(va[0] - vb[0], va[1] - vb[1]) <= tolerance)


def _refind_in_lane(lost: Sequence[Track], dets: Sequence[Detection], ts: float) -> list[tuple[Track, Detection]]:
    """Pairs of lost tracks and would-be new tracks that are the same object come out from behind an
    occluder (a tree, a parked truck) further along its lane than the track coasted.

    A vehicle that was queueing when it went out of sight and pulled away behind the occluder comes
    out ahead of where its slow mean velocity put it, outside every gate; a new track started there
    would not count the line it crossed while hidden. A detection is the lost object when it has the
    object's class and size across the direction of travel, lies on its path (the line from its first
    to its last observation, within half its size across it), ahead of where it was last seen, and
    no further than the object could have got: at twice its speed (at least one box length per
    second) while speeding up by one box length per second squared. Its speed is the faster of its
    means over the last two seconds and the last one (a car pulling away from a queue), and its size
    that of its last detection of its own class (the front of a car going behind a tree may have
    been taken for a bicycle). The closest to the coasting position wins.
    """
    candidates: list[tuple[float, int, int]] = []
    for ti, t in enumerate(lost):
        if not t.was_confirmed or len(t.seen) < 3:
            continue
        (x0, y0), (t1, x1, y1) = t.origin, t.seen[-1]
        travel = float(np.hypot(x1 - x0, y1 - y0))
        bx1, by1, bx2, by2 = t.own_box
        width, height = max(bx2 - bx1, 1.0), max(by2 - by1, 1.0)
        if travel < 0.5 * min(width, height) or t1 <= t.first_ts:
            continue  # no direction of travel to follow
        ux, uy = (x1 - x0) / travel, (y1 - y0) / travel
        length = abs(ux) * width + abs(uy) * height  # extent along the path
        across = abs(uy) * width + abs(ux) * height  # extent across it
        means = [v for v in (t.mean_velocity(), t.mean_velocity(1.0)) if v is not None]
        speed = max([travel / (t1 - t.first_ts)] + [float(np.hypot(*v)) for v in means])
        elapsed = ts - t.last_ts
        reach = max(2.0 * speed, length) * elapsed + 0.5 * length * elapsed**2 + 0.5 * length
        expected = speed * elapsed
        for di, d in enumerate(dets):
            if d.label != t.label:
                continue
            dx1, dy1, dx2, dy2 = d.box
            d_across = abs(uy) * (dx2 - dx1) + abs(ux) * (dy2 - dy1)
            if not 0.67 <= d_across / across <= 1.5:
                continue
            cx, cy = _centre(d.box)
            along = (cx - x1) * ux + (cy - y1) * uy
            off_path = abs((cx - x1) * uy - (cy - y1) * ux)
            if along <= 0.0 or along > reach or off_path > 0.5 * across:
                continue
            candidates.append((abs(along - expected), ti, di))
    return [(lost[ti], dets[di]) for ti, di in _greedy_pairs((ti, di) for _, ti, di in sorted(candidates))]


def _greedy_pairs(preferred: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """(track, detection) index pairs taken in order of preference, each index at most once."""
    used_t: set[int] = set()
    used_d: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for ti, di in preferred:
        if ti not in used_t and di not in used_d:
            used_t.add(ti)
            used_d.add(di)
            pairs.append((ti, di))
    return pairs


def _centre(box: Sequence[float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def _to_cxcywh(box: Sequence[float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0, max(x2 - x1, 1.0), max(y2 - y1, 1.0)


@dataclass(eq=False)
class Track:
    """One tracked object; its ``id`` never changes and is never reused by a tracker."""

    id: int
    kalman: BoxKalman
    last_detection: Detection
    first_ts: float
    last_ts: float
    state: TrackState = TrackState.TENTATIVE
    hits: int = 1
    misses: int = 0
    was_confirmed: bool = False
    """Whether the track was ever confirmed (still true once it is removed)."""
    class_votes: dict[str, float] = field(default_factory=dict)
    _label: str | None = field(default=None, repr=False)
    seen: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=16), repr=False)
    """(time, centre x, centre y) of the latest observations."""

    origin: tuple[float, float] = field(default=(0.0, 0.0), repr=False)
    """Centre of the first observation."""
    own_box: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0), repr=False)
    """Box of the latest detection of the track's own class: its size, where a part of the object
    seen as another class (the front of a car coming out from behind a tree taken for a bicycle)
    gives a smaller one."""

    def __post_init__(self) -> None:
        self.origin = _centre(self.last_detection.box)
        self.own_box = self.last_detection.box
        self.seen.append((self.last_ts, *self.origin))

    def mean_velocity(self, window_s: float = 2.0) -> tuple[float, float] | None:
        """Centre velocity (pixels/s) between the first and the last observation of the last ``window_s``;
        None with fewer than three observations or less than half a second between them.

        The filter's velocity follows the latest observations, which a coarse detector (a centroid grid
        places objects to within a cell) makes jumpy and, while an object stays in one cell, zero; the
        mean over a couple of seconds is steady.
        """
        if len(self.seen) < 3:
            return None
        last_ts, lx, ly = self.seen[-1]
        first_ts, fx, fy = next((t, x, y) for t, x, y in self.seen if last_ts - t <= window_s)
        if last_ts - first_ts < 0.5:
            return None
        return (lx - fx) / (last_ts - first_ts), (ly - fy) / (last_ts - first_ts)

    def coasting_box(self, ts: float) -> tuple[float, float, float, float]:
        """Where a lost track is at ``ts``: its last observed box moved on at its mean velocity (the
        Kalman prediction without one). Two people passing each other, merged into one detection for
        a moment, are told apart again by where each was heading."""
        v = self.mean_velocity()
        if v is None:
            return self.kalman.box
        dt = max(ts - self.last_ts, 0.0)
        x1, y1, x2, y2 = self.last_detection.box
        return (x1 + v[0] * dt, y1 + v[1] * dt, x2 + v[0] * dt, y2 + v[1] * dt)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Current (filtered or predicted) box."""
        return self.kalman.box

    @property
    def label(self) -> str:
        """The class seen most, weighted by score (a car seen once as a truck stays a car)."""
        if self._label is None:
            self._label = max(self.class_votes.items(), key=lambda kv: kv[1])[0]
        return self._label

    @property
    def score(self) -> float:
        """Score of the last detection matched to the track."""
        return self.last_detection.score

    @property
    def confirmed(self) -> bool:
        """Seen often enough to be trusted (``CONFIRMED`` or ``LOST`` after being confirmed)."""
        return self.state in (TrackState.CONFIRMED, TrackState.LOST)

    def _observe(self, det: Detection, ts: float) -> None:
        self.kalman.update(det.box)
        self.seen.append((ts, *_centre(det.box)))
        self.last_detection = det
        self.last_ts = ts
        self.hits += 1
        self.misses = 0
        self.class_votes[det.label] = self.class_votes.get(det.label, 0.0) + det.score
        self._label = None
        if det.label == self.label:
            self.own_box = det.box


@dataclass(frozen=True, slots=True)
class TrackerUpdate:
    """What one tracker step produced."""

    observed: tuple[tuple[Track, Detection], ...]
    """Tracks matched to a detection in this frame (the only positions counting should trust)."""
    tracks: tuple[Track, ...]
    """Every live track after the step (tentative, confirmed, lost)."""
    removed: tuple[Track, ...]
    """Tracks dropped in this step."""


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Thresholds of :class:`ByteTracker` (see the module docstring for what each stage does)."""

    high_score: float = 0.5
    low_score: float = 0.1
    new_track_score: float = 0.5
    match_iou: float = 0.2
    low_match_iou: float = 0.4
    centre_gate: float = 1.0
    min_hits: int = 2
    max_lost_s: float = 2.0
    max_lost_frames: int = 30
    tentative_max_misses: int = 1
    duplicate_iou: float = 0.3
    lane_refind: bool = True


class ByteTracker:
    """Two-stage (ByteTrack-style) tracker fed one frame's detections at a time."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[Track] = []
        self._ids = itertools.count(1)
        self._last_ts: float | None = None

    @property
    def tracks(self) -> tuple[Track, ...]:
        """Live tracks."""
        return tuple(self._tracks)

    def hold(self, ts: float) -> None:
        """Keep every track alive without a detector run (the scene was still since the last update).

        Still means nothing moved: velocities are zeroed and the time is not counted as missing.
        """
        for t in self._tracks:
            if t.state != TrackState.LOST:
                t.kalman.stop()
                t.last_ts = max(t.last_ts, ts)
        self._last_ts = ts

    def update(self, detections: Sequence[Detection], ts: float) -> TrackerUpdate:
        """Associate ``detections`` observed at ``ts`` (seconds) with the tracks; return the outcome."""
        cfg = self.config
        dt = 0.0 if self._last_ts is None else max(ts - self._last_ts, 0.0)
        self._last_ts = ts
        for t in self._tracks:
            t.kalman.predict(dt)

        high = [d for d in detections if d.score >= cfg.high_score]
        low = [d for d in detections if cfg.low_score <= d.score < cfg.high_score]
        observed: list[tuple[Track, Detection]] = []

        confirmed = [t for t in self._tracks if t.confirmed]
        tentative = [t for t in self._tracks if t.state == TrackState.TENTATIVE]

        # Stage 1: high-score detections against every confirmed track, lost ones included.
        pairs, rest_tracks, rest_high = self._associate(confirmed, high, cfg.match_iou, cfg.centre_gate)
        observed += pairs
        # Stage 2: low-score detections keep the remaining tracked (or just lost) objects alive.
        still_tracked = [
            t for t in rest_tracks if t.state == TrackState.CONFIRMED or (t.state == TrackState.LOST and t.misses <= 2)
        ]
        pairs, rest_tracked, _ = self._associate(still_tracked, low, cfg.low_match_iou, cfg.centre_gate / 2)
        observed += pairs
        unmatched_confirmed = [t for t in rest_tracks if t not in still_tracked] + rest_tracked
        # Stage 3: leftover high-score detections against tentative tracks.
        pairs, rest_tentative, new_dets = self._associate(tentative, rest_high, cfg.match_iou, cfg.centre_gate)
        observed += pairs
        # Stage 4: detections that would start a track, against lost tracks whose path they lie on.
        if cfg.lane_refind:
            pairs = _refind_in_lane(unmatched_confirmed, [d for d in new_dets if d.score >= cfg.new_track_score], ts)
            observed += pairs
            found = {id(t) for t, _ in pairs} | {id(d) for _, d in pairs}
            unmatched_confirmed = [t for t in unmatched_confirmed if id(t) not in found]
            new_dets = [d for d in new_dets if id(d) not in found]

        for track, det in observed:
            track._observe(det, ts)
            if track.state == TrackState.LOST or (track.state == TrackState.TENTATIVE and track.hits >= cfg.min_hits):
                track.state = TrackState.CONFIRMED
                track.was_confirmed = True

        removed: list[Track] = []
        for t in unmatched_confirmed:
            t.misses += 1
            t.state = TrackState.LOST
            if ts - t.last_ts > cfg.max_lost_s or t.misses > cfg.max_lost_frames:
                t.state = TrackState.REMOVED
                removed.append(t)
        for t in rest_tentative:
            t.misses += 1
            if t.misses > cfg.tentative_max_misses:
                t.state = TrackState.REMOVED
                removed.append(t)
        # A lost track lying on a track of its class seen in this frame is that object's double: a
        # detector that hesitates between two cells for one object (a walker on a cell boundary) feeds
        # two tracks by turns, and both would count the crossing.
        seen_now = [t for t, _ in observed if t.state == TrackState.CONFIRMED]
        if seen_now:
            for t in unmatched_confirmed:
                if t.state != TrackState.LOST:
                    continue
                overlaps = iou_matrix(np.array([t.coasting_box(ts)]), np.array([o.box for o in seen_now]))[0]
                if any(
                    v >= cfg.duplicate_iou and o.label == t.label and _one_object_seen_twice(t, o)
                    for v, o in zip(overlaps, seen_now)
                ):
                    t.state = TrackState.REMOVED
                    removed.append(t)

        for det in new_dets:
            if det.score < cfg.new_track_score:
                continue
            track = Track(next(self._ids), BoxKalman(det.box), det, ts, ts, class_votes={det.label: det.score})
            if cfg.min_hits <= 1:
                track.state = TrackState.CONFIRMED
                track.was_confirmed = True
            self._tracks.append(track)
            observed.append((track, det))

        self._tracks = [t for t in self._tracks if t.state != TrackState.REMOVED]
        return TrackerUpdate(tuple(observed), tuple(self._tracks), tuple(removed))

    def _associate(
        self, tracks: Sequence[Track], dets: Sequence[Detection], min_iou: float, gate: float
    ) -> tuple[list[tuple[Track, Detection]], list[Track], list[Detection]]:
        """Greedy minimum-cost matching; returns pairs, unmatched tracks, unmatched detections."""
        if not tracks or not dets:
            return [], list(tracks), list(dets)
        det_boxes = np.array([d.box for d in dets], dtype=np.float64)
        now = self._last_ts if self._last_ts is not None else 0.0
        predicted = np.array([t.coasting_box(now) if t.misses else t.box for t in tracks], dtype=np.float64)
        iou = iou_matrix(predicted, det_boxes)
        dist = centre_distance_matrix(predicted, det_boxes)
        # Slow or stopping tracks are also compared where they were last seen: the prediction of a
        # vehicle that braked hard overshoots. Moving tracks are not, or the next vehicle of the
        # lane arriving at that spot would inherit the track of an occluded one.
        slow = np.array([_is_slow(t) for t in tracks])
        if slow.any():
            last_seen = np.array([t.last_detection.box for t in tracks], dtype=np.float64)
            iou[slow] = np.maximum(iou[slow], iou_matrix(last_seen[slow], det_boxes))
            dist[slow] = np.minimum(dist[slow], centre_distance_matrix(last_seen[slow], det_boxes))
        same_class = np.array([[t.label == d.label for d in dets] for t in tracks], dtype=bool)
        # A track seen once has no velocity yet: allow a wider gate for its second observation.
        gates = np.array([gate * (2.0 if t.hits <= 1 else 1.0) for t in tracks])
        gates = gates[:, None].repeat(len(dets), 1)
        cost: FloatArray = np.full(iou.shape, np.inf)
        by_iou = iou >= min_iou
        cost[by_iou] = 1.0 - iou[by_iou]
        by_dist = ~by_iou & (dist <= gates) & same_class
        cost[by_dist] = 1.0 + dist[by_dist] / np.maximum(gates[by_dist], 1e-9)
        # Another class only matches by overlap, after every same-class candidate, only a track seen
        # in the previous frame, and only with its centre inside the track's box: an object changes
        # its apparent class while in view (a truck's cab taken for a car), but a lost track "found
        # again" as another class is another object (a car entering where a person just left the
        # frame), and so is a bigger box overlapping a track from behind (a truck arriving in the
        # queue where a car just pulled away).
        cost[~same_class] += 2.0
        lost = np.array([t.misses > 0 for t in tracks], dtype=bool)
        centres = (det_boxes[:, :2] + det_boxes[:, 2:]) / 2.0
        inside = (
            (centres[None, :, 0] >= predicted[:, None, 0])
            & (centres[None, :, 0] <= predicted[:, None, 2])
            & (centres[None, :, 1] >= predicted[:, None, 1])
            & (centres[None, :, 1] <= predicted[:, None, 3])
        )
        cost[~same_class & (lost[:, None] | ~inside)] = np.inf
        finite = np.argwhere(np.isfinite(cost))
        order = np.argsort(cost[finite[:, 0], finite[:, 1]], kind="stable")
        accepted = _greedy_pairs((int(finite[k, 0]), int(finite[k, 1])) for k in order)
        used_t = {ti for ti, _ in accepted}
        used_d = {di for _, di in accepted}
        return (
            [(tracks[ti], dets[di]) for ti, di in accepted],
            [t for i, t in enumerate(tracks) if i not in used_t],
            [d for i, d in enumerate(dets) if i not in used_d],
        )
