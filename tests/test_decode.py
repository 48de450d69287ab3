"""Payload decoding: the documented reading and frame forms, and the reasons given for bad input."""

from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest

from gateway.decode import DecodeError, decode_frame, decode_readings
from gateway.messages import RawMessage


def raw(payload: bytes | str, topic: str = "sensors/pump1") -> RawMessage:
    data = payload.encode() if isinstance(payload, str) else payload
    return RawMessage(topic, data, 1, False, 1_700_000_000.0)


def test_single_reading_with_values() -> None:
    b = decode_readings(raw('{"ts": 1700000001.5, "source": "pump1", "values": {"a": 1, "b": 2.5}}'))
    (r,) = b.readings
    assert (r.ts, r.source, dict(r.values)) == (1700000001.5, "pump1", {"a": 1.0, "b": 2.5})


def test_defaults_source_to_topic_and_ts_to_receipt() -> None:
    (r,) = decode_readings(raw('{"value": 3}')).readings
    assert (r.source, r.ts, dict(r.values)) == ("sensors/pump1", 1_700_000_000.0, {"value": 3.0})


def test_bare_number_and_iso_time_and_milliseconds() -> None:
    assert dict(decode_readings(raw("21.5")).readings[0].values) == {"value": 21.5}
    (r,) = decode_readings(raw('{"ts": "2024-01-01T00:00:00Z", "value": 1}')).readings
    assert r.ts == 1704067200.0
    (r,) = decode_readings(raw('{"ts": 1704067200123, "value": 1}')).readings
    assert r.ts == pytest.approx(1704067200.123)


def test_batch_forms() -> None:
    doc = {"source": "m1", "readings": [{"ts": 1, "values": {"x": 1}}, {"ts": 2, "source": "m2", "value": 2}]}
    b = decode_readings(raw(json.dumps(doc)))
    assert [(r.ts, r.source) for r in b.readings] == [(1.0, "m1"), (2.0, "m2")]
    b = decode_readings(raw(json.dumps([{"ts": 1, "value": 1}, {"ts": 2, "value": 2}])))
    assert len(b.readings) == 2


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ('{"values": {"a": "x"}}', "values.a: expected a number"),
        ('{"values": {"a": NaN}}', "not a finite number"),
        ('{"values": {}}', "non-empty object"),
        ('{"ts": 1}', "needs 'values'"),
        ('{"ts": "yesterday", "value": 1}', "not an ISO 8601 time"),
        ('{"ts": "2024-01-01T00:00:00", "value": 1}', "no time zone"),
        ('{"ts": true, "value": 1}', "boolean"),
        ('{"ts": -5, "value": 1}', "not a valid time"),
        ('{"source": "", "value": 1}', "source"),
        ('{"readings": {"a": 1}}', "expected a list"),
        ('{"readings": []}', "no readings"),
        ('{"readings": [{"ts": 1, "values": {"a": 1}}, {"ts": 2}]}', "readings[1]."),
        ('"text"', "expected a JSON object"),
    ],
)
def test_bad_readings_give_a_reason(payload: str | bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_readings(raw(payload))
    assert reason in str(info.value)


def _jpeg(w: int = 64, h: int = 48) -> bytes:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (0, 0, 255)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def test_raw_jpeg_and_png_frames() -> None:
    f = decode_frame(raw(_jpeg(), "cameras/cam1/frame"))
    assert f.image.shape == (48, 64, 3) and f.camera == "cameras/cam1/frame"
    assert f.image[10, 5, 2] > 200  # red stays red: BGR order
    ok, png = cv2.imencode(".png", np.full((10, 20, 3), 7, np.uint8))
    assert decode_frame(raw(png.tobytes())).image.shape == (10, 20, 3)


def test_json_frame_with_base64() -> None:
    doc = {"ts": 1700000005, "camera": "cam9", "seq": 3, "image": base64.b64encode(_jpeg()).decode()}
    f = decode_frame(raw(json.dumps(doc)))
    assert (f.ts, f.camera, f.seq, f.image.shape) == (1700000005.0, "cam9", 3, (48, 64, 3))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"GIF89a....", "not a JPEG or PNG"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 20, "corrupt or truncated"),
        (b'{"image": "!!!"}', "not valid base64"),
        (b'{"ts": 1}', "needs 'image'"),
        (b"{broken", "not valid JSON"),
    ],
)
def test_bad_frames_give_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_frame(raw(payload))
    assert reason in str(info.value)
