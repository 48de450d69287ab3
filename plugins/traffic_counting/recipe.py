"""Recipe of the demo detector: a FOMO-style centroid-grid network trained on simulator frames.

The network maps an RGB image (``INPUT_W`` x ``INPUT_H``, raw 0-255 pixel values; scaling happens
inside the graph, so the int8 variant takes ``uint8`` pixels as they are) to a heatmap
``[1, INPUT_H/4, INPUT_W/4, len(LABELS) + 1]`` of per-cell softmax probabilities, channel 0 being
background and channel ``c + 1`` label ``c``. An object is reported in the cell holding the centre
of its visible box; the network says *where* objects are, not how big they are, which is all a line
counter needs and keeps the model tiny (tens of kilobytes as int8).

Training data comes from :mod:`plugins.traffic_counting.scenes`: frames of many scenes (clean and
busy traffic, random looks, noise, lighting), JPEG-compressed like the demo publisher sends them,
resized to the input size. Targets are one-hot heatmaps; the cell of an object that is mostly
hidden or mostly outside the frame is "background or its class" (either answer costs nothing, another
class does; its detections count neither as hits nor as false alarms).

``python -m plugins.traffic_counting.recipe`` trains the recipe and writes every ``.tflite``
variant, the labels and a manifest into ``models/`` (TensorFlow is needed only for that, and is
imported lazily). The gateway's model toolchain builds the same recipe through the
``edge_gateway.model_recipes`` entry point.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from gateway.toolchain.recipe import VARIANTS, Dataset
from plugins.traffic_counting.scenes import LABELS, GroundTruthObject, Scene, SceneConfig

if TYPE_CHECKING:  # pragma: no cover - typing only
    import keras

logger = logging.getLogger(__name__)

INPUT_W = 192
INPUT_H = 144
STRIDE = 4
GRID_W = INPUT_W // STRIDE
GRID_H = INPUT_H // STRIDE
NUM_CHANNELS = len(LABELS) + 1

#: Objects at least this much inside the frame and this visible are targets ...
TARGET_IN_FRAME = 0.5
TARGET_VISIBLE = 0.4
#: ... objects above these (but below the target bar) are "background or its class" cells.
IGNORE_IN_FRAME = 0.15
IGNORE_VISIBLE = 0.1

#: Default operating point of the peak finder (probability of the winning class).
DEFAULT_THRESHOLD = 0.5

_MODULE = "plugins.traffic_counting.recipe"
MODELS_DIR = Path(__file__).resolve().parent / "models"


# ---------------------------------------------------------------------------- data


def preprocess(bgr: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A BGR frame of any size -> the model's RGB ``uint8`` input (stretched to ``INPUT_W`` x ``INPUT_H``)."""
    small = cv2.resize(bgr, (INPUT_W, INPUT_H), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def heatmap_target(
    objects: Iterable[GroundTruthObject], frame_w: int, frame_h: int
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Centroid heatmap ``[GRID_H, GRID_W, C + 1]`` of one frame.

    A cell holding the centre of a well visible object is one-hot on its class; the cell of an object
    mostly hidden or mostly outside the frame is "background or its class" (both set): either answer
    is right there, but another class is not (the front of a car coming out from behind a tree is no
    bicycle)."""
    y = np.zeros((GRID_H, GRID_W, NUM_CHANNELS), np.float32)
    y[..., 0] = 1.0
    claimed = np.zeros((GRID_H, GRID_W), np.float32)  # visible area of the object owning the cell
    ignore: list[tuple[int, int, str]] = []
    for o in objects:
        cx, cy = o.visible_centre
        col = min(GRID_W - 1, max(0, int(cx / frame_w * GRID_W)))
        row = min(GRID_H - 1, max(0, int(cy / frame_h * GRID_H)))
        if o.in_frame >= TARGET_IN_FRAME and o.visible >= TARGET_VISIBLE:
            x1, y1, x2, y2 = o.box
            area = (x2 - x1) * (y2 - y1) * o.visible
            if area > claimed[row, col]:
                claimed[row, col] = area
                y[row, col] = 0.0
                y[row, col, LABELS.index(o.label) + 1] = 1.0
        elif o.in_frame >= IGNORE_IN_FRAME and o.visible >= IGNORE_VISIBLE:
            ignore.append((row, col, o.label))
    for row, col, label in ignore:
        if claimed[row, col] == 0:
            y[row, col, LABELS.index(label) + 1] = 1.0
    return y


@dataclass(frozen=True, slots=True)
class _ClipSpec:
    seed: int
    frames: int


def _scene_config(rng: np.random.Generator) -> SceneConfig:
    kind = rng.uniform()
    size = (640, 480) if rng.uniform() < 0.2 else (320, 240)
    if kind < 0.15:
        # Nearly empty roads next to clutter: what is *not* an object (a tree trunk, a post, stains).
        cfg = SceneConfig(
            vehicle_rate=float(rng.uniform(0.01, 0.04)),
            person_rate=float(rng.uniform(0.003, 0.01)),
            clutter=bool(rng.uniform() < 0.8),
            traffic_lights=bool(rng.uniform() < 0.5),
            lighting_variation=float(rng.uniform(0.0, 0.3)),
            noise_sigma=float(rng.uniform(0.0, 9.0)),
        )
    elif kind < 0.35:
        cfg = SceneConfig.clean(random_look=bool(rng.uniform() < 0.7))
    elif kind < 0.7:
        cfg = SceneConfig.busy()
    else:
        cfg = SceneConfig(
            vehicle_rate=float(rng.uniform(0.08, 0.3)),
            person_rate=float(rng.uniform(0.01, 0.05)),
            truck_share=float(rng.uniform(0.05, 0.3)),
            bicycle_share=float(rng.uniform(0.05, 0.3)),
            traffic_lights=bool(rng.uniform() < 0.6),
            clutter=bool(rng.uniform() < 0.6),
            lighting_variation=float(rng.uniform(0.0, 0.3)),
            noise_sigma=float(rng.uniform(0.0, 9.0)),
        )
    return replace(cfg, width=size[0], height=size[1])


def render_clip(spec: _ClipSpec) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.float32]]]:
    """Model inputs and heatmap targets of one simulated clip (frames 0.3-0.7 s apart, JPEG round trip)."""
    rng = np.random.default_rng([spec.seed, 99])
    cfg = _scene_config(rng)
    scene = Scene(cfg, seed=spec.seed)
    xs = np.zeros((spec.frames, INPUT_H, INPUT_W, 3), np.uint8)
    ys = np.zeros((spec.frames, GRID_H, GRID_W, NUM_CHANNELS), np.float32)
    for i in range(spec.frames):
        if i:
            scene.advance(float(rng.uniform(0.3, 0.7)))
        frame = scene.render()
        quality = int(rng.integers(50, 95))
        ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        image = np.asarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), dtype=np.uint8)
        if rng.uniform() < 0.5:
            xs[i] = preprocess(image)
        else:  # the gateway may resize with another interpolation
            xs[i] = cv2.cvtColor(cv2.resize(image, (INPUT_W, INPUT_H)), cv2.COLOR_BGR2RGB)
        ys[i] = heatmap_target(frame.objects, cfg.width, cfg.height)
    return xs, ys


def render_clips(
    seeds: Sequence[int], frames_per_clip: int, workers: int = 2
) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.float32]]]:
    """Inputs and targets of several clips, rendered in parallel processes."""
    specs = [_ClipSpec(s, frames_per_clip) for s in seeds]
    if workers > 1 and len(specs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(render_clip, specs, chunksize=4))
    else:
        parts = [render_clip(s) for s in specs]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ---------------------------------------------------------------------------- metrics


@dataclass(frozen=True, slots=True)
class Peak:
    """A detected centroid: grid cell, label index (0-based, into ``LABELS``) and probability."""

    row: int
    col: int
    label: int
    score: float


def find_peaks(heatmap: np.ndarray[Any, np.dtype[Any]], threshold: float = DEFAULT_THRESHOLD) -> list[Peak]:
    """Centroids in one heatmap ``[GH, GW, C + 1]``: per class, cells whose probability reaches
    ``threshold`` and is the maximum of that class's 3x3 neighbourhood (ties: first in raster order)."""
    hm = np.asarray(heatmap, np.float32)
    kernel = np.ones((3, 3), np.uint8)
    peaks: list[Peak] = []
    for label in range(hm.shape[-1] - 1):
        prob = np.ascontiguousarray(hm[..., label + 1])
        candidates = np.argwhere((prob >= threshold) & (prob >= cv2.dilate(prob, kernel)))
        taken = np.zeros(prob.shape, bool)
        for r, c in candidates:
            if taken[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2].any():
                continue
            taken[r, c] = True
            peaks.append(Peak(int(r), int(c), label, float(prob[r, c])))
    return peaks


def target_peaks(target: np.ndarray[Any, np.dtype[Any]]) -> tuple[list[Peak], np.ndarray[Any, np.dtype[np.bool_]]]:
    """Ground-truth centroids of a target heatmap, and the mask of its ignore cells."""
    cls = target[..., 1:].argmax(axis=-1)
    labelled = target[..., 1:].max(axis=-1) > 0.5
    either = labelled & (target[..., 0] > 0.5)
    peaks = [Peak(int(r), int(c), int(cls[r, c]), 1.0) for r, c in np.argwhere(labelled & ~either)]
    return peaks, either | (target.sum(axis=-1) < 0.5)


@dataclass
class DetectionScore:
    """Running true/false positive and miss counts of centroid detection, overall and per label."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __post_init__(self) -> None:
        self.per_label: dict[str, list[int]] = {name: [0, 0, 0] for name in LABELS}

    def learn_one(self, predicted: Sequence[Peak], truth: Sequence[Peak], ignore: np.ndarray[Any, Any]) -> None:
        """Match one frame's peaks to its ground truth (same label, within one cell; greedy by score)."""
        unmatched = list(truth)
        for p in sorted(predicted, key=lambda p: -p.score):
            hit = None
            best = 99
            for i, t in enumerate(unmatched):
                dist = max(abs(t.row - p.row), abs(t.col - p.col))
                if t.label == p.label and dist <= 1 and dist < best:
                    hit, best = i, dist
            name = LABELS[p.label]
            if hit is not None:
                unmatched.pop(hit)
                self.tp += 1
                self.per_label[name][0] += 1
            elif not ignore[max(0, p.row - 1) : p.row + 2, max(0, p.col - 1) : p.col + 2].any() and not any(
                max(abs(t.row - p.row), abs(t.col - p.col)) <= 1 for t in truth if t.label != p.label
            ):
                self.fp += 1
                self.per_label[name][1] += 1
            elif not any(max(abs(t.row - p.row), abs(t.col - p.col)) <= 1 for t in truth):
                pass  # near an ignore cell: neither a hit nor a false alarm
            else:
                self.fp += 1  # right place, wrong label
                self.per_label[name][1] += 1
        for t in unmatched:
            self.fn += 1
            self.per_label[LABELS[t.label]][2] += 1

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def report(self) -> dict[str, float]:
        """F1 first (the headline), then precision, recall and per-label recall."""
        out = {"f1": self.f1, "precision": self.precision, "recall": self.recall}
        for name, (tp, _fp, fn) in self.per_label.items():
            out[f"recall_{name}"] = tp / (tp + fn) if tp + fn else 1.0
        return out


def score_heatmaps(
    predicted: np.ndarray[Any, np.dtype[Any]],
    targets: np.ndarray[Any, np.dtype[Any]],
    threshold: float = DEFAULT_THRESHOLD,
) -> DetectionScore:
    """Centroid detection score of a batch of predicted heatmaps against target heatmaps."""
    score = DetectionScore()
    for hm, target in zip(predicted, targets, strict=True):
        truth, ignore = target_peaks(target)
        score.learn_one(find_peaks(hm, threshold), truth, ignore)
    return score


# ---------------------------------------------------------------------------- recipe


class DemoDetectorRecipe:
    """The traffic plugin's demo detector: centroid grid over ``car``, ``truck``, ``bicycle``, ``person``."""

    name = "demo_detector"
    version = "2.1.0"
    package_dir = "plugins/traffic_counting/models"
    epochs = 12
    batch_size = 32
    labels: tuple[str, ...] = LABELS
    object_weight = 24.0
    """Loss weight of object cells relative to background cells (objects hold well under 1 % of cells)."""
    student_width = 1.0
    """Channel multiplier of the student network (``--width``)."""

    def __init__(self, train_clips: int = 160, frames_per_clip: int = 40, workers: int = 2) -> None:
        self.train_clips = train_clips
        self.frames_per_clip = frames_per_clip
        self.workers = workers

    def dataset(self, seed: int) -> Dataset:
        """Frames of disjoint scene seeds for train / validation / test; seeds derive from ``seed``."""
        base = 1_000_000 * (seed + 1)
        n = self.train_clips
        n_val = max(2, n // 10)
        n_test = max(2, n // 8)
        t0 = time.perf_counter()
        x_train, y_train = render_clips(range(base, base + n), self.frames_per_clip, self.workers)
        x_val, y_val = render_clips(range(base + n, base + n + n_val), self.frames_per_clip, self.workers)
        x_test, y_test = render_clips(
            range(base + n + n_val, base + n + n_val + n_test), self.frames_per_clip, self.workers
        )
        logger.info("rendered %d frames in %.1f s", len(x_train) + len(x_val) + len(x_test), time.perf_counter() - t0)
        pick = np.random.default_rng(seed).choice(len(x_train), size=min(300, len(x_train)), replace=False)
        return Dataset(x_train, y_train, x_val, y_val, x_test, y_test, representative=x_train[np.sort(pick)])

    def build(self, role: str) -> keras.Model:
        """The student (shipped, ~20k parameters) or the wider, deeper teacher."""
        import keras
        from keras import layers

        if role not in ("student", "teacher"):
            raise ValueError(f"unknown role {role!r}; expected 'student' or 'teacher'")
        width = self.student_width if role == "student" else 2.0
        extra = 0 if role == "student" else 2

        def ch(n: int) -> int:
            return int(round(n * width / 8) * 8)

        def block(x: Any, out: int, stride: int = 1, dilation: int = 1) -> Any:
            x = layers.DepthwiseConv2D(3, strides=stride, padding="same", dilation_rate=dilation, use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU(6.0)(x)
            x = layers.Conv2D(out, 1, use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            return layers.ReLU(6.0)(x)

        inp = keras.Input((INPUT_H, INPUT_W, 3), name="image")
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inp)
        x = layers.Conv2D(ch(16), 3, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU(6.0)(x)
        x = block(x, ch(24))
        x = block(x, ch(32), stride=2)
        x = skip = block(x, ch(32))
        x = block(x, ch(48), stride=2)
        for _ in range(extra):
            x = block(x, ch(48))
        # Dilated blocks widen the receptive field at stride 8 so a truck's centre cell can see both ends.
        x = block(x, ch(48), dilation=2)
        x = block(x, ch(48), dilation=4)
        x = block(x, ch(48))
        # Back to stride 4, with the stride-4 features: people passing each other stay two cells apart.
        x = layers.UpSampling2D(2, interpolation="bilinear")(x)
        x = layers.Concatenate()([x, skip])
        x = block(x, ch(32))
        x = layers.Conv2D(ch(32), 1, activation="relu")(x)
        out = layers.Conv2D(NUM_CHANNELS, 1, activation="softmax", name="heatmap")(x)
        return keras.Model(inp, out, name=f"{self.name}_{role}")

    def compile_args(self) -> dict[str, Any]:
        """Cell-weighted cross-entropy (works with one-hot, soft and all-zero "ignore" targets; a
        "background or its class" cell costs ``-log(p_background + p_class)`` at an object's weight), Adam
        with a learning rate decaying over ``epochs`` along a cosine."""
        import keras

        weights = np.full(NUM_CHANNELS, self.object_weight, np.float32)
        weights[0] = 1.0

        def weighted_crossentropy(y_true: Any, y_pred: Any) -> Any:
            ops = keras.ops
            either = ops.sum(y_true, axis=-1) > 1.5
            w = ops.where(either, ops.max(y_true * weights, axis=-1), ops.sum(y_true * weights, axis=-1))
            ce = -ops.sum(y_true * ops.log(ops.clip(y_pred, 1e-7, 1.0)), axis=-1)
            ce_either = -ops.log(ops.clip(ops.sum(y_true * y_pred, axis=-1), 1e-7, 1.0))
            return ops.mean(w * ops.where(either, ce_either, ce))

        steps = self.epochs * int(np.ceil(self.train_clips * self.frames_per_clip / self.batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.02)
        return {"loss": weighted_crossentropy, "optimizer": keras.optimizers.Adam(schedule)}

    def evaluate(self, predict: Callable[[np.ndarray], np.ndarray], ds: Dataset) -> dict[str, float]:
        """Centroid detection F1 / precision / recall on the test split (same label, within one cell)."""
        score = DetectionScore()
        for start in range(0, len(ds.x_test), 64):
            batch = ds.x_test[start : start + 64].astype(np.float32)
            heatmaps = np.asarray(predict(batch))
            for hm, target in zip(heatmaps, ds.y_test[start : start + 64], strict=True):
                truth, ignore = target_peaks(target)
                score.learn_one(find_peaks(hm), truth, ignore)
        return score.report()


# ---------------------------------------------------------------------------- stand-alone build


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convert_variants(
    model: keras.Model, representative: np.ndarray[Any, np.dtype[np.uint8]], out_dir: Path, name: str
) -> dict[str, Path]:
    """Write ``<name>_<variant>.tflite`` for every variant; int8 takes and returns ``uint8`` tensors."""
    import tempfile

    import tensorflow as tf

    out_dir.mkdir(parents=True, exist_ok=True)
    saved = Path(tempfile.mkdtemp(prefix=f"{name}_savedmodel_"))
    # A SavedModel export freezes the weights; converting a traced function directly leaves
    # resource variables in the graph, which int8 calibration cannot run.
    model.export(str(saved), format="tf_saved_model", verbose=False)
    paths: dict[str, Path] = {}
    for variant in VARIANTS:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if variant == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif variant == "dynamic":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif variant == "int8":

            def rep() -> Iterable[list[np.ndarray[Any, Any]]]:
                for sample in representative:
                    yield [sample[None].astype(np.float32)]

            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = rep
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.uint8
            conv.inference_output_type = tf.uint8
        path = out_dir / f"{name}_{variant}.tflite"
        path.write_bytes(conv.convert())
        paths[variant] = path
        logger.info("wrote %s (%d bytes)", path, path.stat().st_size)
    return paths


def tflite_predict(path: Path, num_threads: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """A batch prediction function over one ``.tflite`` file, in real units (uint8 tensors (de)quantised)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=num_threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]

    def predict(batch: np.ndarray) -> np.ndarray:
        results = []
        for x in batch:
            xi = x[None]
            if inp["dtype"] != np.float32:
                scale, zero = inp["quantization"]
                xi = np.clip(np.round(xi / scale + zero), np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max)
            interp.set_tensor(inp["index"], xi.astype(inp["dtype"]))
            interp.invoke()
            y = interp.get_tensor(out["index"])
            if out["dtype"] != np.float32:
                scale, zero = out["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            results.append(y[0])
        return np.stack(results)

    return predict


def fit_student(
    recipe: DemoDetectorRecipe,
    ds: Dataset,
    epochs: int,
    init: Path | None = None,
    learning_rate: float = 3e-3,
) -> keras.Model:
    """Train the student with a cosine-decaying learning rate, from scratch or on from a saved model.

    (Distillation and pruning: ``edge-gateway models build --distill --prune 0.5``.)
    """
    import keras

    steps = epochs * int(np.ceil(len(ds.x_train) / recipe.batch_size))
    model = recipe.build("student")
    if init is not None:
        model.set_weights(keras.models.load_model(init, compile=False).get_weights())
    args = recipe.compile_args()
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.02)
    args["optimizer"] = keras.optimizers.Adam(schedule)
    model.compile(**args)
    model.fit(
        ds.x_train,
        ds.y_train,
        batch_size=recipe.batch_size,
        epochs=epochs,
        validation_data=(ds.x_val, ds.y_val),
        verbose=2,
    )
    return model


def write_manifest(
    recipe: DemoDetectorRecipe,
    paths: dict[str, Path],
    out_dir: Path,
    metrics: dict[str, dict[str, float]],
    training: dict[str, Any],
) -> Path:
    """Record the files (sha256, size, metrics), labels and I/O contract in ``manifest.json``.

    The entry has the layout the gateway's toolchain writes and its engine verifies against.
    """
    import tensorflow as tf

    from gateway.toolchain.build import recipe_reference, update_manifest

    labels = out_dir / "labels.txt"
    labels.write_text("\n".join(recipe.labels) + "\n", encoding="utf-8")
    entry = {
        "version": recipe.version,
        "recipe": recipe_reference(recipe).replace("__main__:", f"{_MODULE}:"),
        "description": "Demo centroid-grid detector for the synthetic road scenes of "
        "plugins.traffic_counting.scenes; not meant for real cameras (use a COCO detector there).",
        "seed": training.get("seed", 0),
        "training": training | {"keras_metrics": {k: round(v, 6) for k, v in metrics.get("keras", {}).items()}},
        "tensorflow": tf.__version__,
        "labels": {"file": labels.name, "sha256": _sha256(labels)},
        "input": {"width": INPUT_W, "height": INPUT_H, "colour": "RGB", "range": [0, 255], "resize": "stretch"},
        "output": {"layout": "centroid_grid", "stride": STRIDE, "grid": [GRID_H, GRID_W], "background_index": 0},
        "variants": {
            variant: {
                "file": path.name,
                "sha256": _sha256(path),
                "bytes": path.stat().st_size,
                "metrics": {k: round(v, 6) for k, v in metrics.get(variant, {}).items()},
            }
            for variant, path in paths.items()
        },
    }
    return update_manifest(out_dir, recipe.name, entry)


def main(argv: Sequence[str] | None = None) -> int:
    """Train the demo detector and write its variants, labels and manifest."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, default=MODELS_DIR)
    parser.add_argument("--epochs", type=int, default=DemoDetectorRecipe.epochs)
    parser.add_argument("--clips", type=int, default=160, help="training clips (40 frames each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=float, default=None, help="channel multiplier of the student")
    parser.add_argument("--object-weight", type=float, default=None, help="loss weight of object cells")
    parser.add_argument("--init", type=Path, default=None, help="continue training this saved Keras model")
    parser.add_argument("--lr", type=float, default=3e-3, help="initial learning rate (cosine decay)")
    parser.add_argument("--keras", type=Path, default=None, help="also save the trained Keras model here")
    parser.add_argument("--cache", type=Path, default=None, help="rendered dataset (.npz), reused if present")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import keras

    keras.utils.set_random_seed(args.seed)
    recipe = DemoDetectorRecipe(train_clips=args.clips)
    if args.width is not None:
        recipe.student_width = args.width
    if args.object_weight is not None:
        recipe.object_weight = args.object_weight
    if args.cache is not None and args.cache.exists():
        with np.load(args.cache) as z:
            ds = Dataset(**{k: z[k] for k in z.files})
    else:
        ds = recipe.dataset(args.seed)
        if args.cache is not None:
            np.savez(args.cache, **ds.__dict__)
    logger.info("train %s val %s test %s", ds.x_train.shape, ds.x_val.shape, ds.x_test.shape)
    model = fit_student(recipe, ds, args.epochs, init=args.init, learning_rate=args.lr)
    if args.keras is not None:
        model.save(args.keras)
    metrics = {"keras": recipe.evaluate(lambda b: model.predict(b, verbose=0), ds)}
    logger.info("keras: %s", metrics["keras"])
    paths = convert_variants(model, ds.representative, args.out, recipe.name)
    for variant, path in paths.items():
        metrics[variant] = recipe.evaluate(tflite_predict(path), ds)
        logger.info("%s: %s", variant, {k: round(v, 4) for k, v in metrics[variant].items()})
    training = {
        "seed": args.seed,
        "epochs": args.epochs,
        "continued_from": args.init.name if args.init else None,
        "lr": args.lr,
        "clips": args.clips,
        "student_width": recipe.student_width,
        "object_weight": recipe.object_weight,
        "distilled": False,
        "params": model.count_params(),
    }
    write_manifest(recipe, paths, args.out, metrics, training)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
