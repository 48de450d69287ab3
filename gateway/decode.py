"""Decoding of MQTT payloads into the messages plugins receive.

Readings (JSON, UTF-8):

* single: ``{"ts": 1700000000.5, "source": "pump1", "values": {"current": 3.2, "vib_rms": 0.12}}``;
  ``{"ts": ..., "value": 21.5}`` is short for ``"values": {"value": 21.5}``; a bare number (``21.5``) is a
  reading of channel ``value`` at the time it was received.
* batch: ``{"source": "pump1", "readings": [{"ts": ..., "values": {...}}, ...]}`` (a reading's own ``source``
  wins over the batch's), or a JSON array of single readings.

``ts`` is seconds since the epoch (a number) or an ISO 8601 string (``2024-05-01T12:00:00Z``); it defaults to
the time of receipt. ``source`` defaults to the topic. Values must be finite numbers (booleans count as 0/1).

Frames: the raw bytes of a JPEG or PNG image, or JSON ``{"ts": ..., "camera": "cam1", "image": "<base64>"}``.
``camera`` defaults to the topic.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from gateway.messages import Frame, RawMessage, Reading, ReadingBatch

MAX_BATCH = 10_000
_JPEG = b"\xff\xd8"
_PNG = b"\x89PNG"


class DecodeError(ValueError):
    """A payload that cannot be turned into a message; the text is the reason published on the errors topic."""


def _ts(value: Any, default: float, where: str) -> float:
    if value is None:
        return default
    if type(value) is float and 0 <= value <= 1e11:  # the common case, seconds since the epoch
        return value  # type: ignore[no-any-return]
    if isinstance(value, bool):
        raise DecodeError(f"{where}ts: expected seconds since the epoch or an ISO 8601 string, got a boolean")
    if isinstance(value, (int, float)):
        ts = float(value)
        if ts > 1e11:  # milliseconds, a common publisher habit
            ts /= 1000.0
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise DecodeError(f"{where}ts: {value[:40]!r} is not an ISO 8601 time") from None
        if dt.tzinfo is None:
            raise DecodeError(f"{where}ts: {value[:40]!r} has no time zone (add Z or an offset)")
        ts = dt.timestamp()
    else:
        raise DecodeError(f"{where}ts: expected a number or a string, got {type(value).__name__}")
    if not math.isfinite(ts) or ts < 0:
        raise DecodeError(f"{where}ts: {ts} is not a valid time")
    return ts


def _values(obj: Mapping[str, Any], where: str) -> dict[str, float]:
    raw = obj.get("values")
    if raw is None:
        if "value" not in obj:
            raise DecodeError(f"{where}: a reading needs 'values' (or 'value')")
        raw = {"value": obj["value"]}
    elif not isinstance(raw, dict) or not raw:
        raise DecodeError(f"{where}values: expected a non-empty object of channel: number")
    out: dict[str, float] = {}
    for k, v in raw.items():
        t = type(v)
        if t is float:
            f = v
        elif t is int or t is bool:
            f = float(v)
        else:
            raise DecodeError(f"{where}values.{k}: expected a number, got {t.__name__}")
        if f - f != 0.0:  # NaN or an infinity (json.loads accepts both)
            raise DecodeError(f"{where}values.{k}: {f} is not a finite number")
        out[k] = f
    return out


def _reading(obj: Any, source: str, now: float, where: str) -> Reading:
    if type(obj) is not dict:
        raise DecodeError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    src = obj.get("source", source)
    if type(src) is not str or not src:
        raise DecodeError(f"{where}source: expected a non-empty string")
    return Reading(ts=_ts(obj.get("ts"), now, where), source=src, values=_values(obj, where))


def decode_readings(msg: RawMessage) -> ReadingBatch:
    """Decode a JSON readings payload (single or batch) from ``msg``."""
    try:
        doc = json.loads(msg.payload.decode("utf-8"))  # UTF-8 only: skips json's encoding detection
    except (UnicodeDecodeError, ValueError) as e:
        raise DecodeError(f"not valid JSON: {e}") from None
    now = msg.received_at
    if type(doc) is dict and "readings" not in doc:  # the common case first: one reading
        return ReadingBatch(topic=msg.topic, received_at=now, readings=(_reading(doc, msg.topic, now, ""),))
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        readings: tuple[Reading, ...] = (_reading({"value": doc}, msg.topic, now, ""),)
    elif isinstance(doc, list):
        if len(doc) > MAX_BATCH:
            raise DecodeError(f"batch of {len(doc)} readings is over the limit of {MAX_BATCH}")
        readings = tuple(_reading(r, msg.topic, now, f"[{i}]") for i, r in enumerate(doc))
    elif isinstance(doc, Mapping) and "readings" in doc:
        items = doc["readings"]
        if not isinstance(items, list):
            raise DecodeError("readings: expected a list")
        if len(items) > MAX_BATCH:
            raise DecodeError(f"batch of {len(items)} readings is over the limit of {MAX_BATCH}")
        source = doc.get("source", msg.topic)
        if not isinstance(source, str) or not source:
            raise DecodeError("source: expected a non-empty string")
        readings = tuple(_reading(r, source, now, f"readings[{i}].") for i, r in enumerate(items))
    else:
        readings = (_reading(doc, msg.topic, now, ""),)
    if not readings:
        raise DecodeError("no readings in the payload")
    return ReadingBatch(topic=msg.topic, received_at=now, readings=readings)


def _image(data: bytes, where: str) -> np.ndarray[Any, np.dtype[np.uint8]]:
    import cv2

    if not (data.startswith(_JPEG) or data.startswith(_PNG)):
        raise DecodeError(f"{where}not a JPEG or PNG image")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise DecodeError(f"{where}the image data is corrupt or truncated")
    return image  # type: ignore[no-any-return]


def decode_frame(msg: RawMessage) -> Frame:
    """Decode a camera frame: raw JPEG/PNG bytes, or JSON with a base64 image."""
    payload = msg.payload
    now = msg.received_at
    if payload[:1] in (b"{", b" ", b"\n"):
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, ValueError) as e:
            raise DecodeError(f"not valid JSON: {e}") from None
        if not isinstance(doc, Mapping) or not isinstance(doc.get("image"), str):
            raise DecodeError("a JSON frame needs 'image' (base64 JPEG or PNG)")
        try:
            data = base64.b64decode(doc["image"], validate=True)
        except (binascii.Error, ValueError):
            raise DecodeError("image: not valid base64") from None
        camera = doc.get("camera", msg.topic)
        if not isinstance(camera, str) or not camera:
            raise DecodeError("camera: expected a non-empty string")
        seq = doc.get("seq")
        return Frame(
            topic=msg.topic,
            received_at=now,
            ts=_ts(doc.get("ts"), now, ""),
            camera=camera,
            image=_image(data, "image: "),
            seq=seq if isinstance(seq, int) else None,
        )
    return Frame(topic=msg.topic, received_at=now, ts=now, camera=msg.topic, image=_image(payload, ""))
