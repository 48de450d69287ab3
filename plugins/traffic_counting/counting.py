"""Counting lines: directed crossings of tracked objects, per class, cumulative and per interval.

A :class:`CountingLine` is a segment from ``p1`` to ``p2`` in frame pixels. Crossing from the left-hand
side to the right-hand side of ``p1 -> p2`` (as drawn on the image, y pointing down) is the line's
``in`` direction, the other way its ``out`` direction; both are named by the user.

How the known failure modes of counting tools are avoided:

- Jitter on the line: hysteresis. A side is only committed once the anchor point is more than
  ``margin`` pixels from the line; a crossing is a change of committed side, so an object wobbling
  inside the band never counts twice.
- Low frame rates: the path between consecutive observed anchor positions is tested against the
  segment, so an object that jumps over a thin line between two frames still counts.
- Lines near the frame edge: the margin is clamped to half the room the frame leaves on each side
  of the line, and a track that crossed the line and then left the frame (last seen touching the
  border) counts even if its clipped box never got past the margin.
- Objects appearing on the line: a track first seen inside the band (its object came out from behind
  something standing on the line, or its previous track was lost there) is taken to have come from
  the side opposite the one it settles on (half its extent past the line, or half the room the
  frame leaves), unless a crossing in that direction was counted within half its length of it
  along the line in the last ``recent_s`` seconds (the same object, whose detection hopped back
  onto the line under a new track; the next lane is further). Tracks already there when counting
  starts are not counted: nobody saw where they came from.
- Unconfirmed tracks: a crossing seen while its track is tentative is held and only counted once
  the track is confirmed; a track that never gets confirmed never counts.
- ID switches: a track counts at most once per line and direction (only once per line without
  ``count_returns``), and a track born after an ID switch starts on the side where it first
  appeared, so it has not crossed anything.
- Stop-and-go: only observed positions are used (never Kalman predictions, which overshoot a
  vehicle that stopped).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from plugins.traffic_counting.geometry import Point

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CountingLine:
    """A directed counting line in frame pixels."""

    name: str
    p1: Point
    p2: Point
    in_name: str = "in"
    out_name: str = "out"
    classes: frozenset[str] | None = None
    margin: float = 6.0
    margin_in: float | None = None
    """Effective margin on the ``in`` (right-hand) side; set by :meth:`fitted_to`."""
    margin_out: float | None = None
    """Effective margin on the ``out`` (left-hand) side; set by :meth:`fitted_to`."""
    room_in: float | None = None
    """How far the frame reaches past the line on the ``in`` side; set by :meth:`fitted_to`."""
    room_out: float | None = None
    """How far the frame reaches past the line on the ``out`` side; set by :meth:`fitted_to`."""

    def __post_init__(self) -> None:
        if self.length <= 0:
            raise ValueError(f"line {self.name!r} has two identical points")
        if self.in_name == self.out_name:
            raise ValueError(f"line {self.name!r}: in and out directions need different names")

    @property
    def length(self) -> float:
        """Length in pixels."""
        return float(((self.p2[0] - self.p1[0]) ** 2 + (self.p2[1] - self.p1[1]) ** 2) ** 0.5)

    def signed_distance(self, p: Point) -> float:
        """Distance of ``p`` from the (infinite) line, positive on the ``in`` side."""
        dx, dy = self.p2[0] - self.p1[0], self.p2[1] - self.p1[1]
        return (dx * (p[1] - self.p1[1]) - dy * (p[0] - self.p1[0])) / self.length

    def half_extent(self, size: tuple[float, float]) -> float:
        """Half the extent across the line of a box of ``size`` (width, height)."""
        dx, dy = self.p2[0] - self.p1[0], self.p2[1] - self.p1[1]
        return 0.5 * (abs(dy) * size[0] + abs(dx) * size[1]) / self.length

    def extent_along(self, size: tuple[float, float]) -> float:
        """The extent along the line of a box of ``size`` (width, height)."""
        dx, dy = self.p2[0] - self.p1[0], self.p2[1] - self.p1[1]
        return (abs(dx) * size[0] + abs(dy) * size[1]) / self.length

    def position_along(self, p: Point) -> float:
        """Projection of ``p`` on the line: 0 at ``p1``, 1 at ``p2``."""
        dx, dy = self.p2[0] - self.p1[0], self.p2[1] - self.p1[1]
        return ((p[0] - self.p1[0]) * dx + (p[1] - self.p1[1]) * dy) / (self.length**2)

    def fitted_to(self, width: int, height: int) -> CountingLine:
        """This line with margins clamped so each side leaves room to pass the band inside the frame."""
        corners = [(0.0, 0.0), (float(width), 0.0), (0.0, float(height)), (float(width), float(height))]
        dists = [self.signed_distance(c) for c in corners]
        room_in = max(0.0, max(dists))
        room_out = max(0.0, -min(dists))
        margin_in = min(self.margin, room_in / 2.0)
        margin_out = min(self.margin, room_out / 2.0)
        if margin_in < self.margin or margin_out < self.margin:
            logger.info(
                "line %s is near the frame edge: margins %.1f/%.1f px instead of %.1f",
                self.name,
                margin_in,
                margin_out,
                self.margin,
            )
        return CountingLine(
            self.name,
            self.p1,
            self.p2,
            self.in_name,
            self.out_name,
            self.classes,
            self.margin,
            margin_in,
            margin_out,
            room_in,
            room_out,
        )

    def counts_class(self, label: str) -> bool:
        """Whether objects of class ``label`` are counted on this line."""
        return self.classes is None or label in self.classes


@dataclass(frozen=True, slots=True)
class Crossing:
    """One object crossing one line in one direction."""

    track_id: int
    line: str
    direction: str
    label: str
    ts: float
    confidence: float


@dataclass
class _TrackOnLine:
    side: int | None = None
    crossed_inside: bool | None = None
    crossed_ts: float | None = None
    crossed_at: float = 0.0
    """Where along the line (pixels from ``p1``) the last crossing was."""
    prev: Point | None = None
    prev_ts: float | None = None
    born_in_band: bool = False
    """First seen inside the band, and no side committed yet."""
    inferred_extent: float | None = None
    """Set when the pending crossing was inferred from a birth in the band: the object's length along
    the line (half of it is the reach of the check for a crossing already counted)."""
    counted: set[int] = field(default_factory=set)
    pending: list[tuple[int, float]] = field(default_factory=list)
    """Crossings (side reached, time) held until the track is confirmed."""


def _mark_crossing(line: CountingLine, st: _TrackOnLine, at: Point, ts: float) -> None:
    """Record that ``st``'s track was on ``line`` at point ``at`` at time ``ts``."""
    t = line.position_along(at)
    st.crossed_inside = -1e-6 <= t <= 1.0 + 1e-6
    st.crossed_ts = ts
    st.crossed_at = t * line.length


class LineCounts:
    """Counts by line, class and direction; cumulative and for the current interval."""

    def __init__(self) -> None:
        self.total: dict[str, dict[str, dict[str, int]]] = {}
        self.interval: dict[str, dict[str, dict[str, int]]] = {}

    def add(self, line: str, label: str, direction: str) -> None:
        """Count one crossing."""
        for table in (self.total, self.interval):
            per_class = table.setdefault(line, {}).setdefault(label, {})
            per_class[direction] = per_class.get(direction, 0) + 1

    def take_interval(self) -> dict[str, dict[str, dict[str, int]]]:
        """The interval's counts; starts a new interval."""
        out, self.interval = self.interval, {}
        return out

    def restore(self, total: Mapping[str, Mapping[str, Mapping[str, int]]]) -> None:
        """Continue cumulative counts from a saved snapshot."""
        self.total = {line: {c: dict(d) for c, d in per.items()} for line, per in total.items()}

    def snapshot(self) -> dict[str, dict[str, dict[str, int]]]:
        """A copy of the cumulative counts."""
        return {line: {c: dict(d) for c, d in per.items()} for line, per in self.total.items()}


class LineCounter:
    """Turns observed anchor positions of tracks into counted :class:`Crossing` values for a set of lines.

    Feed it with :meth:`observe` for every track matched to a detection, in time order, and call
    :meth:`forget` when a track is removed.
    """

    def __init__(self, lines: Sequence[CountingLine], count_returns: bool = True, recent_s: float = 2.0) -> None:
        names = [line.name for line in lines]
        if len(set(names)) != len(names):
            raise ValueError("counting lines need unique names")
        self.lines = list(lines)
        self.count_returns = count_returns
        self.recent_s = recent_s
        self.counts = LineCounts()
        self._state: dict[tuple[int, str], _TrackOnLine] = {}
        self._started: float | None = None
        # (line, time, position along the line, side) of the latest crossings counted; bounded, and
        # only the last ``recent_s`` seconds of it are ever read.
        self._recent: deque[tuple[str, float, float, int]] = deque(maxlen=256)

    def observe(
        self,
        track_id: int,
        anchor: Point,
        ts: float,
        label: str,
        confidence: float,
        confirmed: bool,
        size: tuple[float, float] = (0.0, 0.0),
    ) -> list[Crossing]:
        """Record the track at ``anchor`` at time ``ts``; return the crossings counted now.

        ``size`` is the object's box (width, height): a track that already counted a crossing counts
        the way back only once the anchor is half the object's extent across the line past it, so
        the detections of a long vehicle waiting on the line, which hop between its cab and its body,
        do not count it twice.
        """
        out: list[Crossing] = []
        if self._started is None:
            self._started = ts
        for line in self.lines:
            st = self._state.setdefault((track_id, line.name), _TrackOnLine())
            self._step(line, st, anchor, ts, size, ts > self._started)
            if confirmed and st.pending:
                out += self._flush(line, st, track_id, label, confidence)
        return out

    def _flush(
        self, line: CountingLine, st: _TrackOnLine, track_id: int, label: str, confidence: float
    ) -> list[Crossing]:
        out: list[Crossing] = []
        for side, when in st.pending:
            if side in st.counted or (st.counted and not self.count_returns) or not line.counts_class(label):
                continue
            if st.inferred_extent is not None and self._counted_near(line, side, when, st):
                st.counted.add(side)  # the same object under a new track: never count it later
                continue
            st.counted.add(side)
            self._recent.append((line.name, when, st.crossed_at, side))
            direction = line.in_name if side > 0 else line.out_name
            self.counts.add(line.name, label, direction)
            out.append(Crossing(track_id, line.name, direction, label, when, confidence))
        st.pending.clear()
        st.inferred_extent = None
        return out

    def _counted_near(self, line: CountingLine, side: int, when: float, st: _TrackOnLine) -> bool:
        """Whether a crossing of ``line`` towards ``side`` was counted near ``st``'s, in place and time."""
        reach = 0.5 * (st.inferred_extent or 0.0)
        return any(
            name == line.name and s == side and abs(when - t) <= self.recent_s and abs(st.crossed_at - at) < reach
            for name, t, at, s in self._recent
        )

    def _step(
        self, line: CountingLine, st: _TrackOnLine, p: Point, ts: float, size: tuple[float, float], watching: bool
    ) -> None:
        d = line.signed_distance(p)
        first = st.prev is None
        if st.prev is not None and st.prev_ts is not None:
            d_prev = line.signed_distance(st.prev)
            if (d_prev < 0.0 <= d) or (d < 0.0 <= d_prev):
                frac = 0.0 if d == d_prev else d_prev / (d_prev - d)
                x = st.prev[0] + frac * (p[0] - st.prev[0])
                y = st.prev[1] + frac * (p[1] - st.prev[1])
                _mark_crossing(line, st, (x, y), st.prev_ts + frac * (ts - st.prev_ts))
        st.prev, st.prev_ts = p, ts
        margin_in = line.margin if line.margin_in is None else line.margin_in
        margin_out = line.margin if line.margin_out is None else line.margin_out
        side = 1 if d > margin_in else -1 if d < -margin_out else None
        if st.born_in_band and side is not None:
            # Which side it came from is told by the side it settles on: half its extent past the
            # line (the cab and the body of a truck seen by turns are ~30 px apart), or half the
            # room the frame leaves there.
            room = line.room_in if side > 0 else line.room_out
            settled = line.half_extent(size) if room is None else min(line.half_extent(size), room / 2.0)
            if abs(d) < settled:
                side = None
        if first and side is None and watching:
            st.born_in_band = True
            _mark_crossing(line, st, p, ts)
        if side is not None and st.born_in_band:
            # It came out of the band on this side: it came into view on the line from the other.
            st.born_in_band = False
            st.side = -side
            st.inferred_extent = line.extent_along(size)
        if side is None or (st.counted and side not in st.counted and abs(d) < line.half_extent(size)):
            return
        if (
            st.side is not None
            and side != st.side
            and st.crossed_inside
            and side not in st.counted
            and all(s != side for s, _ in st.pending)
        ):
            st.pending.append((side, st.crossed_ts if st.crossed_ts is not None else ts))
        if side != st.side:
            st.crossed_inside = None
            st.crossed_ts = None
        st.side = side

    def left_frame(self, track_id: int, label: str, confidence: float, confirmed: bool) -> list[Crossing]:
        """A track last seen at the frame's border is gone: complete crossings it had started.

        The anchor of a box clipped by the frame border stops short of the border, so an object
        leaving the frame just after a line may never get past the margin. If such a track had
        crossed the line (within the segment) and was last seen on the far side, it counts.
        """
        out: list[Crossing] = []
        for line in self.lines:
            st = self._state.get((track_id, line.name))
            if st is None or st.prev is None or not st.crossed_inside or st.side is None:
                continue
            side = 1 if line.signed_distance(st.prev) >= 0 else -1
            if side != st.side:
                st.pending.append((side, st.crossed_ts if st.crossed_ts is not None else st.prev_ts or 0.0))
                st.side = side
            if confirmed:
                out += self._flush(line, st, track_id, label, confidence)
        return out

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop the state of removed tracks (held crossings of unconfirmed tracks are discarded)."""
        gone = set(track_ids)
        for key in [k for k in self._state if k[0] in gone]:
            del self._state[key]
