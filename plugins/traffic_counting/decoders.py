"""Detector output decoders: turn a model's output tensors into :class:`Detection` values.

Three layouts are supported, named as in the model spec's ``output`` field:

- ``ssd_postprocessed``: the ``TFLite_Detection_PostProcess`` outputs of SSD and EfficientDet-Lite
  models (boxes ``[1, N, 4]`` as ymin, xmin, ymax, xmax normalised; classes ``[1, N]``; scores
  ``[1, N]``; count ``[1]``), whatever order the converter put them in.
- ``yolo``: raw YOLO heads, v5 style ``[1, N, 5 + C]`` (cx, cy, w, h, objectness, class scores) or
  v8 style ``[1, 4 + C, N]`` (no objectness), boxes in input pixels or normalised; class-aware
  non-maximum suppression is applied here.
- ``centroid_grid``: a FOMO-style heatmap ``[1, H/s, W/s, C + 1]`` of per-cell class probabilities
  (channel 0 is background); blobs or local maxima above a threshold become detections whose box
  is either a nominal size or the blob's extent.

All decoders map coordinates back to the frame through an :class:`InputGeometry`, so letterboxed
and stretched inputs both come back as frame pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from plugins.traffic_counting.geometry import AnchorName, Polygon, anchor_point

logger = logging.getLogger(__name__)

DecoderLayout = Literal["ssd_postprocessed", "yolo", "centroid_grid"]


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object in frame pixels."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_id: int
    label: str

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``(x1, y1, x2, y2)``."""
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.y2 - self.y1

    def anchor(self, anchor: AnchorName) -> tuple[float, float]:
        """The box's anchor point (see :func:`~plugins.traffic_counting.geometry.anchor_point`)."""
        return anchor_point(self.box, anchor)


class LabelMap:
    """Class ids to names; ids without a name are called by their number."""

    def __init__(self, names: Sequence[str] = ()) -> None:
        self._names = list(names)

    @classmethod
    def load(cls, labels: Sequence[str] | str | Path | None, base_dir: Path | None = None) -> LabelMap:
        """From a list of names, or a text file with one name a line (index = class id)."""
        if labels is None:
            return cls()
        if isinstance(labels, (str, Path)):
            path = Path(labels)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            lines = path.read_text(encoding="utf-8").splitlines()
            return cls([line.strip() for line in lines])
        return cls(list(labels))

    def __len__(self) -> int:
        return len(self._names)

    def name(self, class_id: int) -> str:
        """The name of ``class_id`` (its number as text when unknown or blank)."""
        if 0 <= class_id < len(self._names) and self._names[class_id]:
            return self._names[class_id]
        return str(class_id)

    def names(self) -> list[str]:
        """All names, index = class id."""
        return list(self._names)


@dataclass(frozen=True, slots=True)
class InputGeometry:
    """How a frame was mapped to the model's input, to map detections back.

    ``input = frame * scale + pad`` per axis (stretching has different x and y scales and no pad;
    letterboxing one scale and a centred pad).
    """

    frame_width: int
    frame_height: int
    input_width: int
    input_height: int
    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    @classmethod
    def stretch(cls, frame_w: int, frame_h: int, input_w: int, input_h: int) -> InputGeometry:
        """The frame resized to the input size, aspect ratio not kept."""
        return cls(frame_w, frame_h, input_w, input_h, input_w / frame_w, input_h / frame_h)

    @classmethod
    def letterbox(cls, frame_w: int, frame_h: int, input_w: int, input_h: int) -> InputGeometry:
        """The frame scaled to fit the input, aspect ratio kept, centred with padding."""
        scale = min(input_w / frame_w, input_h / frame_h)
        pad_x = (input_w - frame_w * scale) / 2.0
        pad_y = (input_h - frame_h * scale) / 2.0
        return cls(frame_w, frame_h, input_w, input_h, scale, scale, pad_x, pad_y)

    def boxes_to_frame(self, boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``(N, 4)`` boxes in input pixels (x1, y1, x2, y2) to frame pixels, clipped to the frame."""
        out = np.empty_like(boxes, dtype=np.float64)
        out[:, 0] = (boxes[:, 0] - self.pad_x) / self.scale_x
        out[:, 2] = (boxes[:, 2] - self.pad_x) / self.scale_x
        out[:, 1] = (boxes[:, 1] - self.pad_y) / self.scale_y
        out[:, 3] = (boxes[:, 3] - self.pad_y) / self.scale_y
        out[:, 0::2] = np.clip(out[:, 0::2], 0.0, float(self.frame_width))
        out[:, 1::2] = np.clip(out[:, 1::2], 0.0, float(self.frame_height))
        return out


class Decoder(Protocol):
    """Turns one inference's outputs into detections in frame pixels."""

    def decode(self, outputs: Sequence[np.ndarray], geometry: InputGeometry) -> list[Detection]: ...


def _detections(
    boxes: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
    class_ids: npt.NDArray[np.int64],
    labels: LabelMap,
) -> list[Detection]:
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return [
        Detection(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(s), int(c), labels.name(int(c)))
        for b, s, c in zip(boxes[keep], scores[keep], class_ids[keep], strict=True)
    ]


class SsdPostprocessedDecoder:
    """Decoder of ``TFLite_Detection_PostProcess`` outputs (SSD, EfficientDet-Lite).

    The four tensors are recognised by shape and content rather than position, because converters
    emit them in different orders (TF1 exports: boxes, classes, scores, count; some TF2 exports:
    scores, boxes, count, classes).
    """

    def __init__(self, labels: LabelMap, min_score: float = 0.0, label_offset: int = 0) -> None:
        self.labels = labels
        self.min_score = min_score
        self.label_offset = label_offset

    def decode(self, outputs: Sequence[np.ndarray], geometry: InputGeometry) -> list[Detection]:
        boxes, classes, scores, count = self._split(outputs)
        n = min(int(count), len(scores))
        boxes, classes, scores = boxes[:n], classes[:n], scores[:n]
        keep = scores >= self.min_score
        boxes, classes, scores = boxes[keep], classes[keep], scores[keep]
        # (ymin, xmin, ymax, xmax) normalised -> (x1, y1, x2, y2) input pixels
        in_px = np.stack(
            [
                boxes[:, 1] * geometry.input_width,
                boxes[:, 0] * geometry.input_height,
                boxes[:, 3] * geometry.input_width,
                boxes[:, 2] * geometry.input_height,
            ],
            axis=1,
        ).astype(np.float64)
        ids = np.rint(classes).astype(np.int64) + self.label_offset
        return _detections(geometry.boxes_to_frame(in_px), scores.astype(np.float64), ids, self.labels)

    @staticmethod
    def _split(
        outputs: Sequence[np.ndarray],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
        if len(outputs) != 4:
            raise ValueError(f"ssd_postprocessed expects 4 outputs, got {len(outputs)}")
        arrays = [np.asarray(o, dtype=np.float64) for o in outputs]
        box_idx = [i for i, a in enumerate(arrays) if a.ndim >= 2 and a.shape[-1] == 4 and a.size > 4]
        count_idx = [i for i, a in enumerate(arrays) if a.size == 1]
        if len(box_idx) != 1 or len(count_idx) != 1:
            raise ValueError(
                "ssd_postprocessed outputs not recognised: shapes " + ", ".join(str(a.shape) for a in arrays)
            )
        boxes = arrays[box_idx[0]].reshape(-1, 4)
        count = float(arrays[count_idx[0]].reshape(-1)[0])
        rest = [i for i in range(4) if i not in (box_idx[0], count_idx[0])]
        a, b = (arrays[i].reshape(-1) for i in rest)
        n = min(int(count), len(a))
        # Class ids are whole numbers; scores are probabilities. Ties (e.g. no detections) keep the
        # canonical order, where classes come before scores.
        a_whole = bool(np.all(a[:n] == np.rint(a[:n])))
        b_whole = bool(np.all(b[:n] == np.rint(b[:n])))
        if b_whole and not a_whole:
            classes, scores = b, a
        else:
            classes, scores = a, b
        return boxes, classes, scores, count


def nms(
    boxes: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
    iou_threshold: float,
    max_detections: int = 300,
) -> npt.NDArray[np.int64]:
    """Greedy non-maximum suppression; indices of the kept boxes, best score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[int] = []
    while order.size and len(keep) < max_detections:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _overlap_of_smaller(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Intersection of two boxes over the area of the smaller one."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(w * h / max(smaller, 1e-12))


class YoloDecoder:
    """Decoder of raw YOLO v5/v8-style outputs with class-aware non-maximum suppression.

    ``num_classes`` tells v5 (``5 + C`` values per candidate) from v8 (``4 + C``); when unknown the
    label map's size is used, and failing that the layout is guessed from the tensor (a v8 head is
    transposed, ``[1, 4 + C, N]`` with ``N`` much larger than ``4 + C``).
    """

    def __init__(
        self,
        labels: LabelMap,
        num_classes: int | None = None,
        min_score: float = 0.25,
        iou_threshold: float = 0.45,
        normalised: bool | None = None,
        max_detections: int = 100,
    ) -> None:
        self.labels = labels
        self.num_classes = num_classes or (len(labels) or None)
        self.min_score = min_score
        self.iou_threshold = iou_threshold
        self.normalised = normalised
        self.max_detections = max_detections

    def _candidates(self, raw: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], bool]:
        """``(N, K)`` candidates and whether they carry an objectness column."""
        a = raw.reshape(raw.shape[-2], raw.shape[-1]) if raw.ndim >= 2 else raw.reshape(1, -1)
        c = self.num_classes
        if c is not None:
            for cand in (a, a.T):
                if cand.shape[1] == 5 + c:
                    return cand, True
                if cand.shape[1] == 4 + c:
                    return cand, False
            raise ValueError(f"yolo output {raw.shape} fits neither 4+{c} nor 5+{c} values per candidate")
        cand = a.T if a.shape[0] < a.shape[1] else a
        # Unknown class count: v8 heads are exported transposed, v5 heads are not.
        return cand, not (a.shape[0] < a.shape[1])

    def decode(self, outputs: Sequence[np.ndarray], geometry: InputGeometry) -> list[Detection]:
        raw = np.asarray(outputs[0], dtype=np.float64)
        cand, has_objectness = self._candidates(raw)
        class_scores = cand[:, 5:] * cand[:, 4:5] if has_objectness else cand[:, 4:]
        class_ids = np.argmax(class_scores, axis=1)
        scores = class_scores[np.arange(len(cand)), class_ids]
        keep = scores >= self.min_score
        cand, class_ids, scores = cand[keep], class_ids[keep], scores[keep]
        if len(cand) == 0:
            return []
        cx, cy, w, h = cand[:, 0], cand[:, 1], cand[:, 2], cand[:, 3]
        normalised = self.normalised
        if normalised is None:
            normalised = bool(np.max(np.abs(cand[:, :4])) <= 2.0)
        if normalised:
            cx, w = cx * geometry.input_width, w * geometry.input_width
            cy, h = cy * geometry.input_height, h * geometry.input_height
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        # Class-aware NMS in one pass: shift each class to its own region of the plane.
        offset = class_ids[:, None].astype(np.float64) * (max(geometry.input_width, geometry.input_height) * 4.0)
        kept = nms(boxes + offset, scores, self.iou_threshold, self.max_detections)
        return _detections(
            geometry.boxes_to_frame(boxes[kept]), scores[kept], class_ids[kept].astype(np.int64), self.labels
        )


class CentroidGridDecoder:
    """Decoder of FOMO-style centroid heatmaps ``[1, H/s, W/s, C + 1]`` (channel 0 = background).

    Each cell holds class probabilities (softmax; applied here when the values do not look like
    probabilities). ``grouping="components"`` turns each 8-connected blob of cells of one class into
    one object; ``grouping="peaks"`` keeps local maxima instead, which separates vehicles whose blobs
    touch in dense traffic. Boxes are ``box_size`` (input pixels, per class or for all) centred on
    the blob's probability-weighted centroid, or the blob's extent when no size is given; never
    smaller than two cells, since a centre is only located to within one cell. Objects of one class
    whose boxes overlap by more than ``duplicate_iou`` are merged (the stronger one is kept), and so
    is a box of another class overlapping a stronger one by more than ``cross_class_overlap`` of its
    own area (the cab of a truck also taken for a car: its box sits at the end of the truck's box,
    half of it or more outside).
    """

    def __init__(
        self,
        labels: LabelMap,
        threshold: float = 0.5,
        grouping: Literal["components", "peaks"] = "components",
        box_size: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
        background_index: int = 0,
        duplicate_iou: float = 0.2,
        cross_class_overlap: float = 0.35,
    ) -> None:
        self.labels = labels
        self.threshold = threshold
        self.grouping = grouping
        self.box_size = box_size
        self.background_index = background_index
        self.duplicate_iou = duplicate_iou
        self.cross_class_overlap = cross_class_overlap

    def _size_for(self, label: str) -> tuple[float, float] | None:
        if self.box_size is None:
            return None
        if isinstance(self.box_size, Mapping):
            return self.box_size.get(label)
        return self.box_size

    def decode(self, outputs: Sequence[np.ndarray], geometry: InputGeometry) -> list[Detection]:
        heat = np.asarray(outputs[0], dtype=np.float32)
        if heat.ndim == 4:
            heat = heat[0]
        if heat.ndim != 3:
            raise ValueError(f"centroid_grid expects [1, H, W, C+1], got {np.asarray(outputs[0]).shape}")
        if heat.min() < 0.0 or heat.max() > 1.0 + 1e-3 or not np.allclose(heat.sum(axis=2), 1.0, atol=0.05):
            e = np.exp(heat - heat.max(axis=2, keepdims=True))
            heat = e / e.sum(axis=2, keepdims=True)
        gh, gw, channels = heat.shape
        stride_x = geometry.input_width / gw
        stride_y = geometry.input_height / gh
        winner = np.argmax(heat, axis=2)
        boxes: list[tuple[float, float, float, float]] = []
        scores: list[float] = []
        ids: list[int] = []
        for channel in range(channels):
            if channel == self.background_index:
                continue
            prob = heat[:, :, channel]
            mask = (winner == channel) & (prob >= self.threshold)
            if not mask.any():
                continue
            class_id = channel - 1 if channel > self.background_index else channel
            label = self.labels.name(class_id)
            for cx, cy, extent, score in self._groups(mask, prob):
                size = self._size_for(label)
                px, py = (cx + 0.5) * stride_x, (cy + 0.5) * stride_y
                if size is not None:
                    w, h = size
                else:
                    x0, y0, x1, y1 = extent
                    w, h = (x1 - x0 + 1) * stride_x, (y1 - y0 + 1) * stride_y
                    px, py = (x0 + x1 + 1) / 2.0 * stride_x, (y0 + y1 + 1) / 2.0 * stride_y
                # A centre is only known to within a cell: boxes of at least two cells keep an
                # object that steps into the next cell overlapping its previous box.
                half_w, half_h = max(w, 2 * stride_x) / 2.0, max(h, 2 * stride_y) / 2.0
                boxes.append((px - half_w, py - half_h, px + half_w, py + half_h))
                scores.append(score)
                ids.append(class_id)
        if not boxes:
            return []
        box_arr = np.asarray(boxes, dtype=np.float64)
        score_arr = np.asarray(scores, dtype=np.float64)
        id_arr = np.asarray(ids, dtype=np.int64)
        # A long vehicle can light up two cells a little apart: peaks of one class whose boxes
        # overlap are one object (neighbouring vehicles in a queue are a box length apart).
        offset = id_arr[:, None].astype(np.float64) * (max(geometry.input_width, geometry.input_height) * 4.0)
        keep = nms(box_arr + offset, score_arr, self.duplicate_iou, len(box_arr))
        # Across classes, a box overlapping a stronger one by more than ``cross_class_overlap`` of its
        # area is the same object seen as two classes (the cab of a truck taken for a car).
        kept: list[int] = []
        for i in keep:
            if all(_overlap_of_smaller(box_arr[i], box_arr[j]) <= self.cross_class_overlap for j in kept):
                kept.append(int(i))
        return _detections(geometry.boxes_to_frame(box_arr[kept]), score_arr[kept], id_arr[kept], self.labels)

    def _groups(
        self, mask: npt.NDArray[np.bool_], prob: npt.NDArray[np.float32]
    ) -> list[tuple[float, float, tuple[int, int, int, int], float]]:
        """``(centre x, centre y, (x0, y0, x1, y1) cell extent, score)`` per object, in grid cells."""
        if self.grouping == "peaks":
            local_max = cv2.dilate(prob, np.ones((3, 3), np.uint8))
            ys, xs = np.nonzero(mask & (prob >= local_max))
            # Quantised outputs make plateaus (neighbouring cells with the same probability): keep
            # one peak per plateau, the first in order of decreasing probability.
            order = np.argsort(-prob[ys, xs], kind="stable")
            kept: list[tuple[int, int]] = []
            for k in order:
                y, x = int(ys[k]), int(xs[k])
                if all(max(abs(y - ky), abs(x - kx)) > 1 for ky, kx in kept):
                    kept.append((y, x))
            return [(float(x), float(y), (x, y, x, y), float(prob[y, x])) for y, x in kept]
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        groups = []
        for i in range(1, n):
            ys, xs = np.nonzero(labels == i)
            weights = prob[ys, xs].astype(np.float64)
            cx = float(np.dot(xs, weights) / weights.sum())
            cy = float(np.dot(ys, weights) / weights.sum())
            x, y, w, h = (int(v) for v in stats[i, :4])
            groups.append((cx, cy, (x, y, x + w - 1, y + h - 1), float(weights.max())))
        return groups


class DetectionFilter:
    """Keeps the detections that matter: wanted classes, above their score, anchored inside the ROI.

    ``class_scores`` overrides ``min_score`` per class name; ``roi`` polygons (frame pixels) keep a
    detection when its anchor point lies inside any of them (no polygon: the whole frame).
    """

    def __init__(
        self,
        classes: Sequence[str] | None = None,
        min_score: float = 0.4,
        class_scores: Mapping[str, float] | None = None,
        roi: Sequence[Polygon] = (),
        anchor: AnchorName = "bottom_centre",
        min_area: float = 0.0,
    ) -> None:
        self.classes = frozenset(classes) if classes else None
        self.min_score = min_score
        self.class_scores = dict(class_scores or {})
        self.roi = tuple(roi)
        self.anchor = anchor
        self.min_area = min_area

    def accepts(self, det: Detection) -> bool:
        """Whether ``det`` passes the class, score, size and region filters."""
        if self.classes is not None and det.label not in self.classes:
            return False
        if det.score < self.class_scores.get(det.label, self.min_score):
            return False
        if det.width * det.height < self.min_area:
            return False
        return not self.roi or any(p.contains(det.anchor(self.anchor)) for p in self.roi)

    def __call__(self, detections: Sequence[Detection]) -> list[Detection]:
        return [d for d in detections if self.accepts(d)]
