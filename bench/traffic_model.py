"""Benchmark of the demo detector's variants: size, latency, accuracy, each as a ratio to float32.

Every variant is loaded through the gateway's engine (``ModelRegistry`` + ``ImageInput``) and
measured in the same run, so the ratios against float32 hold on a noisy machine even when the
absolute figures drift:

* size of the ``.tflite`` file;
* latency: median of ``--invokes`` calls of ``Model.run`` on one prepared frame, repeated
  ``--rounds`` times (the median of the round medians is printed), with 1 and 2 threads;
* per-frame cost at the demo's input: JPEG decode + resize + inference + peak finding;
* centroid F1 / precision / recall on held-out frames of clean and busy scenes.

Run: ``python bench/traffic_model.py [--invokes 200] [--rounds 5] [--markdown]``
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.inference import ModelRegistry, ModelSpec  # noqa: E402
from gateway.inference.preprocess import ImageInput  # noqa: E402
from gateway.toolchain.recipe import VARIANTS  # noqa: E402
from plugins.traffic_counting.recipe import DetectionScore, find_peaks, heatmap_target, target_peaks  # noqa: E402
from plugins.traffic_counting.scenes import Scene, SceneConfig  # noqa: E402

logger = logging.getLogger(__name__)

MODELS = ROOT / "plugins" / "traffic_counting" / "models"


def held_out(kind: str, clips: int, frames: int) -> tuple[list[bytes], np.ndarray]:
    """JPEG frames (as the demo publishes them) and target heatmaps of unseen scenes."""
    factory = SceneConfig.busy if kind == "busy" else SceneConfig.clean
    jpegs: list[bytes] = []
    targets = []
    for clip in range(clips):
        config = factory()
        scene = Scene(config, seed=900_000 + 100 * clip + (kind == "busy"))
        for _ in range(frames):
            scene.advance(0.5)
            frame = scene.render()
            ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
            assert ok
            jpegs.append(jpeg.tobytes())
            targets.append(heatmap_target(frame.objects, config.width, config.height))
    return jpegs, np.stack(targets)


def decode(payload: bytes) -> np.ndarray:
    """A JPEG payload as a BGR image, as the gateway decodes frames."""
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("undecodable JPEG")
    return np.asarray(image, dtype=np.uint8)


def latency_ms(registry: ModelRegistry, name: str, x: np.ndarray, invokes: int, rounds: int) -> float:
    """Median over rounds of the median single-call latency of ``Model.run``."""
    model = registry.get(name)
    try:
        for _ in range(20):
            model.run(x)
        medians = []
        for _ in range(rounds):
            samples = []
            for _ in range(invokes):
                start = time.perf_counter()
                model.run(x)
                samples.append(time.perf_counter() - start)
            medians.append(statistics.median(samples))
        return statistics.median(medians) * 1000.0
    finally:
        model.close()


def frame_cost_ms(registry: ModelRegistry, name: str, jpegs: list[bytes], rounds: int) -> float:
    """Median per-frame time of decode + prepare + run + peaks over the held-out JPEGs."""
    model = registry.get(name)
    try:
        prepare = ImageInput(model)
        for payload in jpegs[:10]:  # warm up the decoder and the interpreter
            model.run(prepare.prepare(decode(payload))[None])
        medians = []
        for _ in range(rounds):
            samples = []
            for payload in jpegs:
                start = time.perf_counter()
                image = decode(payload)
                heatmap = model.run(prepare.prepare(image)[None])[0][0]
                find_peaks(heatmap)
                samples.append(time.perf_counter() - start)
            medians.append(statistics.median(samples))
        return statistics.median(medians) * 1000.0
    finally:
        model.close()


def accuracy(registry: ModelRegistry, name: str, jpegs: list[bytes], targets: np.ndarray) -> DetectionScore:
    model = registry.get(name)
    try:
        prepare = ImageInput(model)
        score = DetectionScore()
        for payload, target in zip(jpegs, targets, strict=True):
            image = decode(payload)
            heatmap = model.run(prepare.prepare(image)[None])[0][0]
            truth, ignore = target_peaks(target)
            score.learn_one(find_peaks(heatmap), truth, ignore)
        return score
    finally:
        model.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invokes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clips", type=int, default=6, help="held-out clips per scene kind")
    parser.add_argument("--frames", type=int, default=30, help="frames per clip")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    specs = {
        f"{v}@{t}": ModelSpec(
            path=f"pkg://plugins.traffic_counting/models/demo_detector_{v}.tflite",
            output="centroid_grid",
            runtime="litert",
            num_threads=t,
        )
        for v in VARIANTS
        for t in (1, 2)
    }
    registry = ModelRegistry(specs, base_dir=MODELS)
    data = {kind: held_out(kind, args.clips, args.frames) for kind in ("clean", "busy")}
    probe = registry.get("float32@1")
    x = ImageInput(probe).prepare(decode(data["busy"][0][0]))[None]
    probe.close()

    rows = []
    for variant in VARIANTS:
        model_x = x
        lat1 = latency_ms(registry, f"{variant}@1", model_x, args.invokes, args.rounds)
        lat2 = latency_ms(registry, f"{variant}@2", model_x, args.invokes, args.rounds)
        cost = frame_cost_ms(registry, f"{variant}@1", data["busy"][0][:60], args.rounds)
        clean = accuracy(registry, f"{variant}@1", *data["clean"])
        busy = accuracy(registry, f"{variant}@1", *data["busy"])
        size = (MODELS / f"demo_detector_{variant}.tflite").stat().st_size
        rows.append((variant, size, lat1, lat2, cost, clean, busy))

    base = rows[0]
    assert base[0] == "float32"
    header = (
        "| variant | size (KB) | size ratio | latency 1 thr (ms) | ratio | latency 2 thr (ms) | ratio "
        "| frame cost (ms) | F1 clean | F1 busy | P busy | R busy | F1 busy - float32 |"
    )
    lines = [header, "|" + "---|" * 13]
    for variant, size, lat1, lat2, cost, clean, busy in rows:
        lines.append(
            f"| {variant} | {size / 1024:.1f} | {size / base[1]:.2f} | {lat1:.3f} | {lat1 / base[2]:.2f} "
            f"| {lat2:.3f} | {lat2 / base[3]:.2f} | {cost:.2f} | {clean.f1:.3f} | {busy.f1:.3f} "
            f"| {busy.precision:.3f} | {busy.recall:.3f} | {busy.f1 - base[6].f1:+.3f} |"
        )
    n_clean = data["clean"][1].shape[0]
    n_busy = data["busy"][1].shape[0]
    print(
        f"held-out frames: {n_clean} clean, {n_busy} busy; latency = median of {args.rounds} rounds x "
        f"{args.invokes} invokes; frame cost = JPEG decode + resize + inference + peaks (1 thread)"
    )
    if args.markdown:
        print("\n".join(lines))
    else:
        for line in lines:
            print(line.replace("|", " ").strip())
    int8 = next(r for r in rows if r[0] == "int8")
    print(
        "int8 busy per-label recall: "
        + ", ".join(f"{k[7:]}={v:.3f}" for k, v in int8[6].report().items() if k.startswith("recall_"))
    )
    print(
        f"demo budget at 10 fps: 100 ms/frame; int8 frame cost {int8[4]:.2f} ms "
        f"= {int8[4] / 100.0:.1%} of the budget (max ~{1000.0 / int8[4]:.0f} fps on one core)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
