"""Values that cross a boundary: decoded inputs handed to plugins and the outputs plugins return.

They are small frozen dataclasses so a plugin cannot change what another pipeline also received.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

InputKind = Literal["readings", "frames", "raw"]


@dataclass(frozen=True, slots=True)
class RawMessage:
    """An MQTT message as received: what the router sees before decoding."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_at: float


@dataclass(frozen=True, slots=True)
class Reading:
    """One timestamped sample of one or more named numeric channels from one source.

    ``source`` names the machine or device (from the payload's ``source`` field, else the topic);
    ``values`` maps channel name to value.
    """

    ts: float
    source: str
    values: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class ReadingBatch:
    """The readings decoded from one MQTT message (a single reading is a batch of one)."""

    topic: str
    received_at: float
    readings: tuple[Reading, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One camera image, decoded to a BGR ``uint8`` array of shape (height, width, 3)."""

    topic: str
    received_at: float
    ts: float
    camera: str
    image: np.ndarray[Any, np.dtype[np.uint8]] = field(repr=False)
    seq: int | None = None


InputMessage = ReadingBatch | Frame | RawMessage


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened (a crossing, an alarm raised or cleared, an anomaly start or end).

    Published QoS1 to ``<prefix>/<pipeline>/event`` through the outbox, with a unique sortable id,
    the gateway id, pipeline, plugin and model added by the publisher. ``ts`` is when it happened
    (defaults to the time it was emitted).
    """

    type: str
    data: Mapping[str, Any]
    ts: float | None = None


@dataclass(frozen=True, slots=True)
class State:
    """The latest value of something; published retained to ``<prefix>/<pipeline>/state[/<key>]``."""

    data: Mapping[str, Any]
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """Aggregates over ``[start, end)``; published QoS1 to ``<prefix>/<pipeline>/summary`` and synced to the cloud."""

    data: Mapping[str, Any]
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A high-rate, lossy stream (e.g. per-sample scores): QoS0 to ``<prefix>/<pipeline>/<channel>``, not stored."""

    channel: str
    data: Mapping[str, Any]


Output = Event | State | Summary | Telemetry
