"""The camera simulator behind the traffic demo: rendered road scenes as MQTT frame payloads.

:class:`CameraSimulator` wraps a :class:`~plugins.traffic_counting.scenes.Scene` for the demo
publisher, which calls :meth:`CameraSimulator.messages` every :attr:`CameraSimulator.period_s`
seconds and publishes what it returns under its topic prefix. Each call advances the scene by
exactly one period of simulated time, so the frames and the ground truth do not depend on how
punctual the caller is; the wall-clock ``now`` only stamps the JSON form.

Payloads are either the raw JPEG bytes or JSON ``{"ts": <epoch s>, "camera": "cam1",
"image": "<base64 JPEG>"}``.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Literal

import cv2

from plugins.traffic_counting.scenes import CountingLine, Crossing, Scene, SceneConfig, SceneFrame

logger = logging.getLogger(__name__)

PayloadFormat = Literal["jpeg", "json"]


class CameraSimulator:
    """One simulated camera: renders its scene at ``fps`` and encodes each frame as an MQTT payload.

    ``preset`` picks :meth:`SceneConfig.clean` or :meth:`SceneConfig.busy` (``config`` overrides it);
    the same ``seed`` always yields the same frames and the same ground truth.
    """

    def __init__(
        self,
        camera: str = "cam1",
        fps: float = 10.0,
        *,
        preset: Literal["clean", "busy"] = "clean",
        config: SceneConfig | None = None,
        seed: int = 0,
        payload: PayloadFormat = "jpeg",
        jpeg_quality: int = 85,
        width: int = 320,
        height: int = 240,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if payload not in ("jpeg", "json"):
            raise ValueError(f"payload must be 'jpeg' or 'json', got {payload!r}")
        if config is None:
            factory = SceneConfig.busy if preset == "busy" else SceneConfig.clean
            config = factory(width=width, height=height)
        self.camera = camera
        self.fps = fps
        self.payload = payload
        self.jpeg_quality = jpeg_quality
        self.scene = Scene(config, seed=seed)
        self.frames_sent = 0
        self.last_frame: SceneFrame | None = None

    @property
    def period_s(self) -> float:
        """Seconds between frames (1 / fps)."""
        return 1.0 / self.fps

    @property
    def topic(self) -> str:
        """Topic suffix of this camera's frames."""
        return f"{self.camera}/frame"

    def next_frame(self) -> SceneFrame:
        """Render the next frame (the first call renders the initial state, later calls advance one period)."""
        if self.frames_sent:
            self.scene.advance(self.period_s)
        frame = self.scene.render()
        self.frames_sent += 1
        self.last_frame = frame
        return frame

    def encode(self, frame: SceneFrame, now: float) -> bytes:
        """The MQTT payload of ``frame`` in the configured form."""
        ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:  # pragma: no cover - OpenCV does not fail on a valid uint8 image
            raise RuntimeError("JPEG encoding failed")
        data = jpeg.tobytes()
        if self.payload == "jpeg":
            return data
        doc = {"ts": now, "camera": self.camera, "image": base64.b64encode(data).decode("ascii")}
        return json.dumps(doc, separators=(",", ":")).encode()

    def messages(self, now: float) -> list[tuple[str, bytes]]:
        """The next frame as ``[(topic suffix, payload)]``; ``now`` (epoch s) stamps the JSON form."""
        return [(self.topic, self.encode(self.next_frame(), now))]

    def crossings(self, line: CountingLine) -> list[Crossing]:
        """Ground-truth crossings of ``line`` between the first and the latest frame sent."""
        return self.scene.crossings(line)

    def counts(self, line: CountingLine) -> dict[str, dict[str, int]]:
        """Ground-truth counts per label and direction between the first and the latest frame sent."""
        return self.scene.counts(line)
