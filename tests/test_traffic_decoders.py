"""Detector output decoders: synthetic tensors for every layout, and the real COCO SSD on real street footage.

The real-model tests need ``../shared/models/ssd_mobilenet_v1_coco`` (beside the repository) and the
street scenes of Debian's ``opencv-doc`` package (``vtest.avi``, a pedestrian street, and
``licenseplate_motion.jpg``, a car); each skips with the reason when its part is missing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from plugins.traffic_counting.decoders import (
    CentroidGridDecoder,
    Detection,
    DetectionFilter,
    InputGeometry,
    LabelMap,
    SsdPostprocessedDecoder,
    YoloDecoder,
    nms,
)
from plugins.traffic_counting.geometry import Polygon, iou_matrix
from plugins.traffic_counting.preprocess import FramePreparer

REPO = Path(__file__).resolve().parents[1]
SSD_DIR = REPO.parent / "shared" / "models" / "ssd_mobilenet_v1_coco"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
STREET_VIDEO = OPENCV_DATA / "vtest.avi"
CAR_PHOTO = OPENCV_DATA / "licenseplate_motion.jpg"

LABELS = LabelMap(["car", "truck", "bicycle", "person"])


# ---------------------------------------------------------------- synthetic: SSD post-processed


def _ssd_outputs() -> list[np.ndarray]:
    boxes = np.zeros((1, 10, 4), np.float32)
    boxes[0, 0] = [0.25, 0.10, 0.50, 0.30]  # ymin, xmin, ymax, xmax
    boxes[0, 1] = [0.60, 0.50, 0.90, 0.55]
    classes = np.zeros((1, 10), np.float32)
    classes[0, :2] = [0, 3]
    scores = np.zeros((1, 10), np.float32)
    scores[0, :2] = [0.9, 0.6]
    return [boxes, classes, scores, np.array([2.0], np.float32)]


def test_ssd_boxes_are_mapped_from_normalised_yx_to_frame_pixels() -> None:
    geo = InputGeometry.stretch(640, 480, 300, 300)
    dets = SsdPostprocessedDecoder(LABELS).decode(_ssd_outputs(), geo)
    assert [d.label for d in dets] == ["car", "person"]
    assert dets[0].box == pytest.approx((64.0, 120.0, 192.0, 240.0))
    assert dets[1].box == pytest.approx((320.0, 288.0, 352.0, 432.0))
    assert dets[0].score == pytest.approx(0.9)


def test_ssd_decoder_recognises_the_outputs_in_any_order() -> None:
    boxes, classes, scores, count = _ssd_outputs()
    geo = InputGeometry.stretch(640, 480, 300, 300)
    canonical = SsdPostprocessedDecoder(LABELS).decode([boxes, classes, scores, count], geo)
    reordered = SsdPostprocessedDecoder(LABELS).decode([scores, boxes, count, classes], geo)
    assert reordered == canonical


def test_ssd_decoder_ignores_entries_beyond_count() -> None:
    boxes, classes, scores, _ = _ssd_outputs()
    dets = SsdPostprocessedDecoder(LABELS).decode(
        [boxes, classes, scores, np.array([1.0])], InputGeometry.stretch(300, 300, 300, 300)
    )
    assert len(dets) == 1


# ---------------------------------------------------------------- synthetic: YOLO


def _yolo_v8(normalised: bool) -> np.ndarray:
    # [1, 4 + C, N]: two overlapping cars (one is a duplicate), a person overlapping the car.
    c, n = 4, 50
    out = np.zeros((1, 4 + c, n), np.float32)
    cands = [
        (100, 100, 80, 40, 0, 0.9),
        (104, 102, 80, 42, 0, 0.7),  # duplicate of the first car
        (110, 100, 30, 60, 3, 0.8),  # person overlapping the car: another class, kept
        (500, 300, 120, 80, 1, 0.6),
        (300, 300, 50, 50, 2, 0.1),  # below the score threshold
    ]
    for i, (cx, cy, w, h, cls, s) in enumerate(cands):
        scale = 640.0 if normalised else 1.0
        out[0, :4, i] = [cx / scale, cy / scale, w / scale, h / scale]
        out[0, 4 + cls, i] = s
    return out


@pytest.mark.parametrize("normalised", [True, False])
def test_yolo_v8_decoding_with_class_aware_nms(normalised: bool) -> None:
    geo = InputGeometry.stretch(640, 640, 640, 640)
    dets = YoloDecoder(LABELS, min_score=0.25, iou_threshold=0.45).decode([_yolo_v8(normalised)], geo)
    assert sorted((d.label, round(d.score, 2)) for d in dets) == [("car", 0.9), ("person", 0.8), ("truck", 0.6)]
    car = next(d for d in dets if d.label == "car")
    assert car.box == pytest.approx((60.0, 80.0, 140.0, 120.0), abs=1e-3)


def test_yolo_v5_layout_uses_objectness() -> None:
    out = np.zeros((1, 3, 5 + 4), np.float32)
    out[0, 0] = [100, 100, 40, 40, 0.9, 0.9, 0.0, 0.0, 0.0]  # car 0.81
    out[0, 1] = [300, 200, 40, 40, 0.3, 0.0, 0.9, 0.0, 0.0]  # truck 0.27
    out[0, 2] = [500, 200, 40, 40, 0.1, 0.0, 0.0, 0.9, 0.0]  # bicycle 0.09: dropped
    dets = YoloDecoder(LABELS, min_score=0.2).decode([out], InputGeometry.stretch(640, 640, 640, 640))
    assert [(d.label, round(d.score, 2)) for d in dets] == [("car", 0.81), ("truck", 0.27)]


def test_yolo_boxes_come_back_through_the_letterbox() -> None:
    # 1280x720 frame letterboxed into 640x640: scale 0.5, 140 px bands above and below.
    geo = InputGeometry.letterbox(1280, 720, 640, 640)
    out = np.zeros((1, 8, 10), np.float32)
    out[0, :4, 0] = [320, 320, 100, 50]  # centre of the input = centre of the frame
    out[0, 4, 0] = 0.9
    (d,) = YoloDecoder(LABELS).decode([out], geo)
    assert d.box == pytest.approx((540.0, 310.0, 740.0, 410.0))


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=np.float64)
    keep = nms(boxes, np.array([0.5, 0.9, 0.7]), 0.5)
    assert keep.tolist() == [1, 2]


# ---------------------------------------------------------------- synthetic: centroid grid


def _grid(blobs: list[tuple[int, int, int, float]], h: int = 30, w: int = 40, classes: int = 4) -> np.ndarray:
    heat = np.zeros((1, h, w, classes + 1), np.float32)
    heat[..., 0] = 1.0
    for y, x, cls, p in blobs:
        heat[0, y, x, 0] = 1.0 - p
        heat[0, y, x, cls + 1] = p
    return heat


def test_centroid_grid_blobs_become_detections_at_their_centroid() -> None:
    heat = _grid([(10, 5, 0, 0.9), (10, 6, 0, 0.9), (20, 30, 3, 0.8)])
    geo = InputGeometry.stretch(320, 240, 320, 240)
    dets = CentroidGridDecoder(LABELS, threshold=0.5, box_size=(40.0, 30.0)).decode([heat], geo)
    by_label = {d.label: d for d in dets}
    assert set(by_label) == {"car", "person"}
    car = by_label["car"]
    assert ((car.x1 + car.x2) / 2, (car.y1 + car.y2) / 2) == pytest.approx((6.0 * 8, 10.5 * 8))
    assert (car.width, car.height) == pytest.approx((40.0, 30.0))


def test_centroid_grid_peaks_separate_touching_vehicles_components_merge_them() -> None:
    heat = _grid([(10, 5, 0, 0.95), (10, 6, 0, 0.6), (10, 7, 0, 0.9)])
    geo = InputGeometry.stretch(320, 240, 320, 240)
    merged = CentroidGridDecoder(LABELS, grouping="components").decode([heat], geo)
    split = CentroidGridDecoder(LABELS, grouping="peaks", box_size=(20.0, 20.0)).decode([heat], geo)
    assert len(merged) == 1 and merged[0].box == pytest.approx((40.0, 76.0, 64.0, 92.0))  # extent, >= 2 cells
    assert len(split) == 2


def test_centroid_grid_boxes_are_at_least_two_cells() -> None:
    heat = _grid([(10, 5, 3, 0.9)])
    (d,) = CentroidGridDecoder(LABELS, box_size=(4.0, 10.0)).decode([heat], InputGeometry.stretch(320, 240, 320, 240))
    assert (d.width, d.height) == pytest.approx((16.0, 16.0))


def test_centroid_grid_peaks_on_a_quantised_plateau_give_one_object() -> None:
    heat = _grid([(10, 5, 0, 0.99609375), (10, 6, 0, 0.99609375), (11, 6, 0, 0.99609375), (10, 12, 0, 0.9)])
    dets = CentroidGridDecoder(LABELS, grouping="peaks", box_size=(20.0, 20.0)).decode(
        [heat], InputGeometry.stretch(320, 240, 320, 240)
    )
    assert len(dets) == 2


def test_centroid_grid_merges_two_peaks_of_one_long_vehicle() -> None:
    # A truck lights up cells 2 apart (same class), and its cab is also taken for a car.
    heat = _grid([(10, 5, 1, 0.9), (10, 7, 1, 0.7), (10, 6, 0, 0.6), (10, 20, 1, 0.8)])
    sizes = {"truck": (50.0, 18.0), "car": (24.0, 12.0)}
    dets = CentroidGridDecoder(LABELS, grouping="peaks", box_size=sizes).decode(
        [heat], InputGeometry.stretch(320, 240, 320, 240)
    )
    assert sorted((d.label, round(d.score, 1)) for d in dets) == [("truck", 0.8), ("truck", 0.9)]


def test_centroid_grid_drops_a_cab_lit_at_the_end_of_a_truck_box() -> None:
    # The truck's box (50 px, fixed size) is centred on its peak; the cab, taken for a car one cell
    # short of the box's end, has half of its box inside the truck's. A car one lane down is kept.
    sizes = {"truck": (50.0, 18.0), "car": (24.0, 12.0)}
    heat = _grid([(10, 10, 1, 0.9), (10, 13, 0, 0.8), (13, 10, 0, 0.8)])
    dets = CentroidGridDecoder(LABELS, grouping="peaks", box_size=sizes).decode(
        [heat], InputGeometry.stretch(320, 240, 320, 240)
    )
    assert sorted((d.label, d.box[1]) for d in dets) == [("car", 100.0), ("truck", 75.0)]
    # Where another class may stand partly in front of a stronger box, a higher bar keeps both.
    dets = CentroidGridDecoder(LABELS, grouping="peaks", box_size=sizes, cross_class_overlap=0.6).decode(
        [heat], InputGeometry.stretch(320, 240, 320, 240)
    )
    assert sorted(d.label for d in dets) == ["car", "car", "truck"]


def test_centroid_grid_applies_softmax_to_logits() -> None:
    logits = np.zeros((1, 30, 40, 5), np.float32)
    logits[..., 0] = 5.0
    logits[0, 3, 3, 2] = 9.0  # truck
    dets = CentroidGridDecoder(LABELS, threshold=0.5).decode([logits], InputGeometry.stretch(320, 240, 320, 240))
    assert [d.label for d in dets] == ["truck"] and dets[0].score > 0.9


# ---------------------------------------------------------------- filters and label maps


def test_detection_filter_applies_classes_thresholds_and_roi() -> None:
    roi = [Polygon(((0, 0), (320, 0), (320, 480), (0, 480)))]
    f = DetectionFilter(classes=["car", "person"], min_score=0.3, class_scores={"person": 0.6}, roi=roi)
    dets = [
        Detection(10, 10, 50, 50, 0.5, 0, "car"),  # kept
        Detection(400, 10, 450, 50, 0.9, 0, "car"),  # outside the ROI
        Detection(10, 10, 30, 50, 0.5, 3, "person"),  # below the person threshold
        Detection(10, 10, 50, 50, 0.9, 1, "truck"),  # class not wanted
        Detection(10, 10, 50, 50, 0.2, 0, "car"),  # below the threshold
    ]
    assert f(dets) == [dets[0]]


def test_label_map_from_file_and_unknown_ids(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("car\ntruck\n\nperson\n", encoding="utf-8")
    labels = LabelMap.load("labels.txt", base_dir=tmp_path)
    assert [labels.name(i) for i in range(5)] == ["car", "truck", "2", "person", "4"]


# ---------------------------------------------------------------- the real COCO SSD on real footage


@pytest.fixture(scope="module")
def ssd():  # type: ignore[no-untyped-def]
    if not (SSD_DIR / "model.tflite").exists():
        pytest.skip(f"real COCO detector not available at {SSD_DIR} (it lives beside the repository)")
    from gateway.inference import ModelRegistry, ModelSpec

    spec = ModelSpec(
        path=str(SSD_DIR / "model.tflite"),
        labels=str(SSD_DIR / "labelmap.txt"),
        output="ssd_postprocessed",
        input={"mean": 127.5, "std": 127.5},
        sha256="cbdecd08b44c5dea3821f77c5468e2936ecfbf43cde0795a2729fdb43401e58b",
    )
    model = ModelRegistry({"ssd": spec}, REPO).get("ssd")
    yield model
    model.close()


def _street_frame(index: int = 0) -> np.ndarray:
    if not STREET_VIDEO.exists():
        pytest.skip(f"street video {STREET_VIDEO} missing (Debian package opencv-doc)")
    cap = cv2.VideoCapture(str(STREET_VIDEO))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


def test_real_ssd_finds_the_pedestrians_of_a_street_scene(ssd) -> None:  # type: ignore[no-untyped-def]
    image = _street_frame(0)
    prep = FramePreparer(ssd.input_shape, mean=127.5, std=127.5)
    x, geo = prep(image)
    raw = ssd.run(x)
    dets = SsdPostprocessedDecoder(LabelMap(ssd.labels)).decode(raw, geo)
    assert len(dets) == int(raw[3][0])
    people = [d for d in dets if d.label == "person" and d.score >= 0.6]
    assert len(people) >= 3
    h, w = image.shape[:2]
    for p in people:
        assert 0 <= p.x1 < p.x2 <= w and 0 <= p.y1 < p.y2 <= h
        assert p.height > 1.5 * p.width  # upright people: proves y/x are not swapped


def test_real_ssd_detects_the_car_in_a_street_photo(ssd) -> None:  # type: ignore[no-untyped-def]
    if not CAR_PHOTO.exists():
        pytest.skip(f"street photo {CAR_PHOTO} missing (Debian package opencv-doc)")
    image = cv2.imread(str(CAR_PHOTO))
    x, geo = FramePreparer(ssd.input_shape, mean=127.5, std=127.5)(image)
    dets = SsdPostprocessedDecoder(LabelMap(ssd.labels)).decode(ssd.run(x), geo)
    best = max(dets, key=lambda d: d.score)
    assert best.label == "car" and best.score > 0.6
    assert best.width * best.height > 0.5 * image.shape[0] * image.shape[1]


def test_real_ssd_letterboxed_and_stretched_inputs_agree_on_positions(ssd) -> None:  # type: ignore[no-untyped-def]
    image = _street_frame(0)
    decoder = SsdPostprocessedDecoder(LabelMap(ssd.labels))
    found = {}
    for mode in ("stretch", "letterbox"):
        x, geo = FramePreparer(ssd.input_shape, mean=127.5, std=127.5, resize=mode)(image)  # type: ignore[arg-type]
        found[mode] = [d for d in decoder.decode(ssd.run(x), geo) if d.label == "person" and d.score >= 0.4]
    a = np.array([d.box for d in found["stretch"]])
    b = np.array([d.box for d in found["letterbox"]])
    assert len(a) and len(b)
    best = iou_matrix(a, b).max(axis=1)
    assert (best > 0.5).sum() >= 2  # the same people, in the same places in frame pixels
