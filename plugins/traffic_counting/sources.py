"""Camera sources read through OpenCV, for installations without an MQTT frame publisher.

A :class:`CameraSource` runs one thread per camera: it opens an RTSP/HTTP URL, a V4L2 device
(``/dev/video0`` or its index) or a video file, reads frames at up to ``fps`` and hands each one
as a :class:`gateway.messages.Frame` to a ``submit`` callable (the pipeline queue, which keeps the
newest frame when the worker is behind). A source that fails to open or stops delivering is
reopened with exponential backoff; every change of state is reported through ``on_state``.

Live streams are drained continuously (``grab``) and only the frames due at the target rate are
decoded (``retrieve``), so the stream's own buffer never makes the picture lag. Files are paced at
the target rate when ``realtime`` is set, or read as fast as the consumer takes them for replays.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from gateway.messages import Frame

logger = logging.getLogger(__name__)


class SourceState(str, Enum):
    """Life cycle of a camera source."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A source's state as reported to the pipeline (and published as retained state)."""

    camera: str
    state: SourceState
    frames: int
    failures: int
    retry_in_s: float | None = None
    error: str | None = None


def _is_file(url: str) -> bool:
    return "://" not in url and not url.startswith("/dev/") and not url.isdigit() and Path(url).suffix != ""


class CameraSource:
    """One camera read on its own thread; see the module docstring."""

    def __init__(
        self,
        camera: str,
        url: str,
        submit: Callable[[Frame], None],
        fps: float = 5.0,
        on_state: Callable[[SourceStatus], None] | None = None,
        realtime: bool = True,
        loop: bool = False,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        topic: str | None = None,
        read_timeout_s: float = 10.0,
    ) -> None:
        self.camera = camera
        self.url = url
        self.submit = submit
        self.fps = fps
        self.on_state = on_state
        self.realtime = realtime
        self.loop = loop
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        self.topic = topic or f"camera/{camera}"
        self.read_timeout_s = read_timeout_s
        self.is_file = _is_file(url)
        self.frames = 0
        self.failures = 0
        self.state = SourceState.STOPPED
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start reading on a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.camera}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._set_state(SourceState.STOPPED)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (a file source without ``loop`` ends at the end of the file)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _set_state(self, state: SourceState, retry_in: float | None = None, error: str | None = None) -> None:
        if state == self.state and retry_in is None:
            return
        self.state = state
        status = SourceStatus(self.camera, state, self.frames, self.failures, retry_in, error)
        if error:
            logger.warning("camera %s: %s (%s)", self.camera, state.value, error)
        else:
            logger.info("camera %s: %s", self.camera, state.value)
        if self.on_state is not None:
            try:
                self.on_state(status)
            except Exception:
                logger.exception("camera %s: state callback failed", self.camera)

    def _open(self) -> cv2.VideoCapture:
        if self.url.isdigit():
            return cv2.VideoCapture(int(self.url))
        if "://" in self.url:
            # A camera that stops answering must fail the read (and be reconnected), not hang it.
            timeout_ms = int(self.read_timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
            cap = cv2.VideoCapture(self.url, cv2.CAP_ANY, params)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            return cap
        return cv2.VideoCapture(self.url)

    def _run(self) -> None:
        backoff = self.backoff_initial_s
        self._set_state(SourceState.CONNECTING)
        while not self._stop.is_set():
            cap = self._open()
            if not cap.isOpened():
                cap.release()
                self.failures += 1
                self._set_state(SourceState.RECONNECTING, retry_in=backoff, error="cannot open source")
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2.0, self.backoff_max_s)
                continue
            try:
                delivered = self._read(cap)
            finally:
                cap.release()
            if delivered:
                backoff = self.backoff_initial_s
            if self._stop.is_set():
                break
            if self.is_file and not self.loop:
                self._set_state(SourceState.ENDED)
                return
            if self.is_file:
                continue
            self.failures += 1
            self._set_state(SourceState.RECONNECTING, retry_in=backoff, error="stream stopped delivering frames")
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2.0, self.backoff_max_s)

    def _read(self, cap: cv2.VideoCapture) -> int:
        """Read until the stream ends or fails; returns the number of frames delivered."""
        interval = 1.0 / self.fps if self.fps > 0 else 0.0
        file_fps = cap.get(cv2.CAP_PROP_FPS) if self.is_file else 0.0
        file_step = 1.0 / file_fps if file_fps and file_fps > 0 else interval
        delivered = 0
        next_due = time.monotonic()
        media_time = 0.0
        next_media = 0.0
        frame_media = 0.0
        start_ts = self.clock()
        while not self._stop.is_set():
            if not cap.grab():
                return delivered
            if self.is_file:
                # Files: keep every frame due at the target rate in media time, whatever the pace.
                due = media_time + 1e-9 >= next_media
                frame_media = media_time
                media_time += file_step
                if not due:
                    continue
                next_media += interval
                if self.realtime:
                    delay = next_due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return delivered
                    next_due += interval
            else:
                now = time.monotonic()
                if now < next_due:
                    continue
                next_due = max(next_due + interval, now)
            ok, image = cap.retrieve()
            if not ok or image is None:
                return delivered
            now_ts = self.clock()
            # A file's frames carry their media time, so replays faster than real time keep true speeds.
            ts = start_ts + frame_media if self.is_file else now_ts
            frame = Frame(self.topic, now_ts, ts, self.camera, np.asarray(image, dtype=np.uint8), seq=self.frames)
            self.frames += 1
            delivered += 1
            if self.state != SourceState.STREAMING:
                self._set_state(SourceState.STREAMING)
            self.submit(frame)
        return delivered
