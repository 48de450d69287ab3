"""Camera sources through OpenCV: a real video file written and read back, and reconnection on failure."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.messages import Frame
from plugins.traffic_counting.sources import CameraSource, SourceState, SourceStatus


def _write_video(path: Path, frames: int = 30, fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    assert writer.isOpened()
    for i in range(frames):
        image = np.zeros((120, 160, 3), np.uint8)
        image[40:80, 5 * i % 150 : 5 * i % 150 + 10] = 255
        writer.write(image)
    writer.release()


def test_file_source_replays_every_frame_due_at_the_target_rate(tmp_path: Path) -> None:
    video = tmp_path / "street.avi"
    _write_video(video, frames=30, fps=10.0)
    frames: list[Frame] = []
    states: list[SourceState] = []
    source = CameraSource(
        "gate", str(video), frames.append, fps=5.0, realtime=False, on_state=lambda s: states.append(s.state)
    )
    source.start()
    source.join(timeout=10)
    assert len(frames) == 15  # 3 s of video at 5 fps
    assert [f.seq for f in frames] == list(range(15))
    assert all(f.camera == "gate" and f.topic == "camera/gate" and f.image.shape == (120, 160, 3) for f in frames)
    gaps = np.diff([f.ts for f in frames])
    assert gaps == pytest.approx(np.full(14, 0.2))  # media time, although replayed at full speed
    assert states == [SourceState.CONNECTING, SourceState.STREAMING, SourceState.ENDED]


def test_realtime_file_source_is_paced(tmp_path: Path) -> None:
    video = tmp_path / "street.avi"
    _write_video(video, frames=10, fps=10.0)
    frames: list[Frame] = []
    source = CameraSource("gate", str(video), frames.append, fps=10.0, realtime=True)
    start = time.monotonic()
    source.start()
    source.join(timeout=10)
    assert len(frames) == 10
    assert time.monotonic() - start >= 0.8


def test_looping_file_source_restarts_until_stopped(tmp_path: Path) -> None:
    video = tmp_path / "loop.avi"
    _write_video(video, frames=5, fps=10.0)
    got = threading.Event()
    frames: list[Frame] = []

    def submit(frame: Frame) -> None:
        frames.append(frame)
        if len(frames) >= 12:
            got.set()

    source = CameraSource("loop", str(video), submit, fps=10.0, realtime=False, loop=True)
    source.start()
    assert got.wait(10)
    source.stop()
    assert source.state == SourceState.STOPPED and len(frames) >= 12


def test_unreachable_source_reconnects_with_growing_backoff_and_reports_it(tmp_path: Path) -> None:
    statuses: list[SourceStatus] = []
    source = CameraSource(
        "missing",
        str(tmp_path / "no-such-camera.avi"),
        lambda f: None,
        on_state=statuses.append,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    source.start()
    deadline = time.monotonic() + 5
    while source.failures < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    source.stop()
    retries = [s.retry_in_s for s in statuses if s.state == SourceState.RECONNECTING]
    assert retries[:4] == [0.05, 0.1, 0.2, 0.2]
    assert all(s.error == "cannot open source" for s in statuses if s.state == SourceState.RECONNECTING)
    assert statuses[-1].state == SourceState.STOPPED


def test_source_recovers_when_the_file_appears(tmp_path: Path) -> None:
    video = tmp_path / "late.avi"
    frames: list[Frame] = []
    source = CameraSource(
        "late", str(video), frames.append, fps=10.0, realtime=False, backoff_initial_s=0.05, backoff_max_s=0.05
    )
    source.start()
    time.sleep(0.2)
    assert source.state == SourceState.RECONNECTING
    _write_video(tmp_path / "tmp.avi", frames=5)
    (tmp_path / "tmp.avi").rename(video)
    source.join(timeout=10)
    assert len(frames) == 5 and source.state == SourceState.ENDED and source.failures >= 1


def test_network_stream_is_read_and_reconnected_when_it_ends(tmp_path: Path) -> None:
    # A real HTTP server on the loopback serves a short video; when the stream ends the source
    # reports it and reconnects, and reads the stream again.
    import functools
    import http.server

    _write_video(tmp_path / "cam.avi", frames=20, fps=10.0)

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    statuses: list[SourceStatus] = []
    frames: list[Frame] = []
    source = CameraSource(
        "http",
        f"http://127.0.0.1:{server.server_address[1]}/cam.avi",
        frames.append,
        fps=50.0,
        on_state=statuses.append,
        backoff_initial_s=0.05,
        read_timeout_s=2.0,
    )
    try:
        source.start()
        deadline = time.monotonic() + 10
        while source.failures < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        source.stop()
        server.shutdown()
    states = [s.state for s in statuses]
    assert states[:3] == [SourceState.CONNECTING, SourceState.STREAMING, SourceState.RECONNECTING]
    assert states.count(SourceState.STREAMING) >= 2  # read again after reconnecting
    assert statuses[2].error == "stream stopped delivering frames"
    assert frames and all(f.image.shape == (120, 160, 3) for f in frames)


def test_refused_network_camera_is_retried(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    statuses: list[SourceStatus] = []
    source = CameraSource(
        "rtsp", f"rtsp://127.0.0.1:{port}/stream", lambda f: None, on_state=statuses.append, backoff_initial_s=0.05
    )
    source.start()
    deadline = time.monotonic() + 10
    while source.failures < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    source.stop()
    assert source.failures >= 3 and source.frames == 0
    assert {s.state for s in statuses} == {SourceState.CONNECTING, SourceState.RECONNECTING, SourceState.STOPPED}
