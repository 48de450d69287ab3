"""The engine running a real COCO detector (SSD MobileNet v1, uint8) on real photographs.

Needs ``../shared/models/ssd_mobilenet_v1_coco/`` (skipped when absent). The photographs are OpenCV's
own sample images installed by the Debian ``opencv-doc`` package (skipped when absent): a rear view of
a car in traffic, and a street with parked cars. No other photo with cars ships with the installed
packages, so a synthetic scene covers the rest as a smoke test only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from gateway.inference import InputSpec, Model, ModelSpec
from gateway.inference.preprocess import ImageInput

DETECTOR = Path(__file__).resolve().parents[2] / "shared" / "models" / "ssd_mobilenet_v1_coco"
DETECTOR_SHA256 = "cbdecd08b44c5dea3821f77c5468e2936ecfbf43cde0795a2729fdb43401e58b"
OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc")
CAR_IN_TRAFFIC = OPENCV_SAMPLES / "examples/data/licenseplate_motion.jpg"
PARKED_CARS = OPENCV_SAMPLES / "opencv4/html/black_car.jpg"

pytestmark = pytest.mark.skipif(
    not (DETECTOR / "model.tflite").is_file(), reason="needs ../shared/models/ssd_mobilenet_v1_coco (not present)"
)


@pytest.fixture(scope="module")
def detector() -> Iterator[Model]:
    spec = ModelSpec(
        path="model.tflite",
        sha256=DETECTOR_SHA256,
        labels="labelmap.txt",
        input=InputSpec(colour="RGB", mean=128.0, std=128.0),
        output="ssd_postprocessed",
        delegates=["edgetpu", "xnnpack"],
    )
    model = Model("coco_detector", spec, DETECTOR)
    yield model
    model.close()


def detections(model: Model, frame_bgr: np.ndarray, min_score: float) -> list[tuple[str, float, np.ndarray]]:
    boxes, classes, scores, count = model.run(ImageInput(model).prepare(frame_bgr))
    assert model.labels is not None
    return [
        (model.labels[int(c)], float(s), b)
        for b, c, s in zip(boxes[0][: int(count[0])], classes[0], scores[0])
        if s >= min_score
    ]


def photo(path: Path) -> np.ndarray:
    if not path.is_file():
        pytest.skip(f"{path} not installed (Debian package opencv-doc)")
    image = cv2.imread(str(path))
    assert image is not None
    return image


def test_detector_loads_with_its_tensor_quantisation(detector: Model) -> None:
    (tensor,) = detector.inputs
    assert tensor.shape == (1, 300, 300, 3) and tensor.dtype == np.uint8
    assert (tensor.scale, tensor.zero_point) == (0.0078125, 128)
    assert detector.info.delegate == "xnnpack"  # no Edge TPU here; the fall-back is reported
    assert detector.info.fallbacks[0].delegate == "edgetpu"


def test_uint8_pixels_pass_through_and_match_normalised_floats(detector: Model) -> None:
    frame = np.random.default_rng(1).integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    prepared = ImageInput(detector)
    assert prepared.passthrough
    pixels = prepared.prepare(frame)
    assert pixels.dtype == np.uint8
    normalised = (pixels.astype(np.float32) - 128.0) / 128.0  # the same image in the model's real units
    for a, b in zip(detector.run(pixels), detector.run(normalised)):
        np.testing.assert_array_equal(a, b)


def test_finds_the_car_in_a_real_traffic_photo(detector: Model) -> None:
    found = detections(detector, photo(CAR_IN_TRAFFIC), min_score=0.5)
    assert found, "nothing detected"
    label, score, (ymin, xmin, ymax, xmax) = found[0]
    assert label == "car" and score > 0.6
    assert (ymax - ymin) * (xmax - xmin) > 0.5  # the car fills most of this close-up frame


def test_finds_parked_cars_in_a_real_street_photo(detector: Model) -> None:
    street = photo(PARKED_CARS)[:, :420]  # the left half is the unprocessed photograph
    cars = [d for d in detections(detector, street, min_score=0.4) if d[0] == "car"]
    assert len(cars) >= 3
    assert any(box[2] < 0.2 for _, _, box in cars)  # small cars parked along the top of the frame


def test_synthetic_scene_smoke(detector: Model) -> None:
    """Only a smoke test: a drawn scene proves the pipeline runs, not that the detector is right."""
    scene = np.full((480, 640, 3), (90, 90, 90), np.uint8)
    cv2.rectangle(scene, (0, 300), (640, 480), (60, 60, 60), -1)
    found = detections(detector, scene, min_score=0.0)
    assert all(0.0 <= s <= 1.0 for _, s, _ in found)
    assert detector.stats().count >= 1


def test_fixed_batch_model_refuses_a_batch_and_keeps_working(detector: Model) -> None:
    with pytest.raises(ValueError, match="batches of 1 only"):
        detector.run(np.zeros((2, 300, 300, 3), np.uint8))
    boxes, *_ = detector.run(np.zeros((300, 300, 3), np.uint8))
    assert boxes.shape == (1, 10, 4)
