"""Polygon zones: how many tracked objects are inside, and how long they stay (dwell time).

Occupancy counts confirmed tracks (lost ones too, at their last observed position, while the
tracker still keeps them: a queued car hidden behind a bus is still in the queue). Per interval a
zone reports its maximum and mean occupancy over the frames it saw, and the dwell times of the
objects that left it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from plugins.traffic_counting.geometry import Point, Polygon

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Zone:
    """A named polygon in frame pixels, optionally limited to some classes."""

    name: str
    polygon: Polygon
    classes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ZoneObject:
    """A confirmed track as zones see it."""

    track_id: int
    label: str
    anchor: Point


@dataclass
class _ZoneStats:
    samples: int = 0
    occupancy_sum: int = 0
    occupancy_max: int = 0
    dwells: list[float] = field(default_factory=list)
    entries: int = 0


class ZoneMonitor:
    """Occupancy and dwell time of a set of zones, updated once per processed frame."""

    def __init__(self, zones: Sequence[Zone]) -> None:
        names = [z.name for z in zones]
        if len(set(names)) != len(names):
            raise ValueError("zones need unique names")
        self.zones = list(zones)
        self._inside: dict[str, dict[int, tuple[float, str]]] = {z.name: {} for z in zones}
        self._last_seen: dict[int, float] = {}
        self._stats: dict[str, _ZoneStats] = {z.name: _ZoneStats() for z in zones}

    def update(self, objects: Iterable[ZoneObject], ts: float) -> None:
        """The confirmed objects at time ``ts``; objects not given are taken to have left."""
        objects = list(objects)
        for zone in self.zones:
            inside = self._inside[zone.name]
            stats = self._stats[zone.name]
            now = {
                o.track_id: o
                for o in objects
                if (zone.classes is None or o.label in zone.classes) and zone.polygon.contains(o.anchor)
            }
            for tid in [t for t in inside if t not in now]:
                entered, _ = inside.pop(tid)
                stats.dwells.append(max(0.0, self._last_seen.get(tid, ts) - entered))
            for tid, o in now.items():
                if tid not in inside:
                    inside[tid] = (ts, o.label)
                    stats.entries += 1
                else:
                    inside[tid] = (inside[tid][0], o.label)
            stats.samples += 1
            stats.occupancy_sum += len(inside)
            stats.occupancy_max = max(stats.occupancy_max, len(inside))
        for o in objects:
            self._last_seen[o.track_id] = ts
        live = {o.track_id for o in objects}
        self._last_seen = {t: v for t, v in self._last_seen.items() if t in live}

    def occupancy(self) -> dict[str, dict[str, int]]:
        """Current occupancy per zone, by class."""
        out: dict[str, dict[str, int]] = {}
        for zone in self.zones:
            by_class: dict[str, int] = {}
            for _, label in self._inside[zone.name].values():
                by_class[label] = by_class.get(label, 0) + 1
            out[zone.name] = by_class
        return out

    def dwell_now(self, ts: float) -> dict[str, float]:
        """Longest current dwell per zone, in seconds (0 when empty)."""
        return {
            name: max((ts - entered for entered, _ in inside.values()), default=0.0)
            for name, inside in self._inside.items()
        }

    def take_interval(self) -> dict[str, dict[str, float | int | None]]:
        """Interval statistics per zone; starts a new interval."""
        out: dict[str, dict[str, float | int | None]] = {}
        for zone in self.zones:
            s = self._stats[zone.name]
            out[zone.name] = {
                "occupancy_max": s.occupancy_max,
                "occupancy_mean": round(s.occupancy_sum / s.samples, 3) if s.samples else 0.0,
                "entries": s.entries,
                "dwell_mean_s": round(sum(s.dwells) / len(s.dwells), 3) if s.dwells else None,
                "dwell_max_s": round(max(s.dwells), 3) if s.dwells else None,
            }
            current = len(self._inside[zone.name])
            self._stats[zone.name] = _ZoneStats(occupancy_max=current)
        return out
