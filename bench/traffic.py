"""Throughput of the traffic-counting plugin against the bare detector, on the same frames in the same run.

Three figures, each the median of ``--runs`` runs:

1. processed fps without motion gating (input preparation + detector + decoding + tracking +
   counting) vs the bare detector's invoke rate on inputs prepared beforehand (target >= 0.9);
   the two are timed frame by frame in alternation, so both see the same machine load;
2. frames handled per second with motion gating on a mostly still scene (the first frame repeated
   with sensor noise, with a short burst of real motion) vs the bare detector rate (target >= 3x);
3. per-frame processing latency p50/p99 (frame handed to the plugin -> outputs returned), overall
   and for the frames that produced a crossing event;
4. latency from frame publish to count event over MQTT: a private Mosquitto, the gateway as its own
   process with the demo's traffic pipeline (the shipped int8 demo detector), the camera simulator's
   busy scene published in real time at 5 fps, crossing events received by a subscriber. For each
   event, p50/p99 of (a) arrival - publish time of the frame that produced it (the last frame
   published before it arrived: processing takes far less than a frame period, checked) and (b)
   arrival - publish time of the first frame past the crossing (adds the frames an object takes to
   clear the line's hysteresis margin). Needs ``mosquitto``; ``--latency-seconds 0`` skips it.

The detector is the COCO SSD in ``../shared/models/ssd_mobilenet_v1_coco`` (or ``--model``); frames
come from Debian's ``opencv-doc`` street video, or the camera simulator when that is missing.

    python bench/traffic.py [--runs 3] [--frames 120] [--latency-seconds 60]

``--demo-accuracy`` runs the demo's traffic pipeline exactly as ``config/demo.yaml`` declares it (the
shipped int8 demo detector) on clean and busy scenes of several seeds at the demo camera's 5 fps and
prints, per scene and overall, the counted crossings against the ground truth and the sum of the
per-class-and-direction differences:

    python bench/traffic.py --demo-accuracy [--seeds 1 5 11 ...] [--seconds 150]

``--accuracy`` instead runs the plugin with the given detector on the camera simulator's clean and
busy scenes (frames JPEG-compressed as the demo publisher sends them) and compares its counts per
class and direction with the scenes' ground truth:

    python bench/traffic.py --accuracy --model plugins/traffic_counting/models/demo_detector_int8.tflite \
        --labels plugins/traffic_counting/models/labels.txt --layout centroid_grid --mean 0 --std 1
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import median, ratio_line  # noqa: E402
from gateway.inference import InputSpec, ModelRegistry, ModelSpec  # noqa: E402
from gateway.messages import Event, Frame  # noqa: E402
from gateway.plugin import PluginContext  # noqa: E402
from plugins.traffic_counting import TrafficCountingPlugin  # noqa: E402
from plugins.traffic_counting.options import TrafficCountingOptions  # noqa: E402

SSD_DIR = REPO.parent / "shared" / "models" / "ssd_mobilenet_v1_coco"
STREET_VIDEO = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


class _Models:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def get(self, name: str) -> Any:
        return self.registry.get(name)


class _MemoryState:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value


def load_frames(count: int) -> tuple[list[np.ndarray], str]:
    """Real street frames (10 fps video, every frame) or simulator frames."""
    if STREET_VIDEO.exists():
        cap = cv2.VideoCapture(str(STREET_VIDEO))
        frames: list[np.ndarray] = []
        while len(frames) < count:
            ok, image = cap.read()
            if not ok:
                break
            frames.append(image)
        cap.release()
        return frames, f"{STREET_VIDEO.name} ({frames[0].shape[1]}x{frames[0].shape[0]})"
    from plugins.traffic_counting.scenes import Scene, SceneConfig

    scene = Scene(SceneConfig.busy(width=640, height=480), seed=1)
    return [f.image for f in scene.frames(count, 10.0)], "camera simulator busy scene (640x480)"


def still_scene(frames: list[np.ndarray], moving_share: float = 0.1, seed: int = 0) -> list[np.ndarray]:
    """A mostly still scene: the first frame with fresh sensor noise, and a burst of real motion."""
    rng = np.random.default_rng(seed)
    base = frames[0].astype(np.int16)
    n = len(frames)
    burst = int(n * moving_share)
    out = []
    for i in range(n):
        if n // 2 <= i < n // 2 + burst:
            out.append(frames[i])
        else:
            noise = rng.normal(0.0, 2.0, base.shape).astype(np.int16)
            out.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return out


def _context(registry: ModelRegistry, pipeline: str) -> PluginContext:
    return PluginContext(
        pipeline=pipeline,
        gateway_id="bench",
        logger=logging.getLogger("bench"),
        clock=time.time,
        data_dir=Path.cwd(),
        models=_Models(registry),
        state=_MemoryState(),  # type: ignore[arg-type]
    )


def count_scene(
    registry: ModelRegistry, options: TrafficCountingOptions, scene: Any, line: Any, seconds: float, fps: float
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Ground-truth crossings of ``line`` (``in``/``out``) and the plugin's counts on its line of that name,
    for ``seconds`` of ``scene`` at ``fps``, frames JPEG-compressed as the demo publisher sends them."""
    plugin = TrafficCountingPlugin(options, _context(registry, "accuracy"))
    start = scene.time
    for f in scene.frames(int(seconds * fps), fps):
        ok, jpeg = cv2.imencode(".jpg", f.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        image = np.asarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), dtype=np.uint8)
        plugin.process(Frame("camera/sim", f.ts, f.ts, "sim", image, seq=f.index))
    got = plugin.scenes["sim"].counter.counts.snapshot().get(line.name, {})
    plugin.close()
    return scene.counts(line, since=start), got


def make_plugin(registry: ModelRegistry, gating: bool, labels_classes: list[str]) -> TrafficCountingPlugin:
    options = TrafficCountingOptions.model_validate(
        {
            "model": "detector",
            "classes": labels_classes,
            "lines": [{"name": "kerb", "points": [[0, 0.6], [1, 0.6]]}],
            "units": "normalised",
            "zones": [{"name": "pavement", "points": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}],
            "motion": {"enabled": gating, "refresh_s": 5.0},
        }
    )
    return TrafficCountingPlugin(options, _context(registry, "bench"))


def paired_run(
    plugin: TrafficCountingPlugin, bare: Any, frames: list[np.ndarray], fps: float
) -> tuple[float, float, list[float], list[float]]:
    """Plugin fps and bare-detector fps measured frame by frame in alternation (same machine load).

    Also returns the plugin's per-frame latencies and those of frames that produced an event.
    """
    inputs = [plugin.prepare(f)[0] for f in frames]
    plugin_s = bare_s = 0.0
    latencies: list[float] = []
    event_latencies: list[float] = []
    for i, (image, x) in enumerate(zip(frames, inputs, strict=True)):
        t0 = time.perf_counter()
        bare.run(x)
        t1 = time.perf_counter()
        outputs = list(plugin.process(Frame("camera/bench", t1, i / fps, "bench", image, seq=i)))
        t2 = time.perf_counter()
        bare_s += t1 - t0
        plugin_s += t2 - t1
        latencies.append(t2 - t1)
        if any(isinstance(o, Event) for o in outputs):
            event_latencies.append(t2 - t1)
    return len(frames) / plugin_s, len(frames) / bare_s, latencies, event_latencies


def _count_errors(truth: dict[str, dict[str, int]], got: dict[str, dict[str, int]]) -> tuple[int, int, int]:
    """Total truth, total counted, and the sum of absolute per-class-and-direction differences."""
    t = {(c, d): n for c, per in truth.items() for d, n in per.items()}
    g = {(c, d): n for c, per in got.items() for d, n in per.items()}
    diff = sum(abs(t.get(k, 0) - g.get(k, 0)) for k in set(t) | set(g))
    return sum(t.values()), sum(g.values()), diff


def demo_accuracy(seeds: list[int], seconds: float, fps: float = 5.0) -> int:
    """The demo's traffic pipeline (model and options as ``config/demo.yaml`` declares them) on clean and
    busy simulator scenes at the demo camera's rate, frames JPEG-compressed; counts vs ground truth."""
    import yaml

    from plugins.traffic_counting.scenes import Scene, SceneConfig, vertical_line

    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    pipeline = next(p for p in demo["pipelines"] if p["plugin"] == "traffic_counting")
    options = TrafficCountingOptions.model_validate(pipeline["options"])
    registry = ModelRegistry({options.model: ModelSpec.model_validate(demo["models"][options.model])}, REPO)
    (x, _), (x2, _) = pipeline["options"]["lines"][0]["points"]
    assert x == x2, "the demo's line is vertical"
    directions = {"in": options.lines[0].in_name, "out": options.lines[0].out_name}
    for preset in ("clean", "busy"):
        totals = [0, 0, 0]
        for seed in seeds:
            config = getattr(SceneConfig, preset)()
            scene = Scene(config, seed=seed)
            line = vertical_line(config, fraction=x / config.width, name=options.lines[0].name)
            truth, got = count_scene(registry, options, scene, line, seconds, fps)
            truth = {c: {directions[d]: n for d, n in per.items()} for c, per in truth.items()}
            total, counted, diff = _count_errors(truth, got)
            totals = [totals[0] + total, totals[1] + counted, totals[2] + diff]
            tree = next((cx for kind, cx, _ in scene._clutter if kind == "tree"), None)  # noqa: SLF001
            where = ""
            if tree is not None:
                # the canopy spans about 27 px left and 25 px right of the trunk (320 px frame)
                hidden = tree * config.width / 320 - 27 <= x <= tree * config.width / 320 + 25
                where = f"; tree at x={tree * config.width / 320:.0f}" + (" hides the line" if hidden else "")
            print(
                f"{preset} seed {seed}: truth {total}, counted {counted} ({(counted - total) / max(total, 1):+.1%}); "
                f"per class and direction off by {diff} ({diff / max(total, 1):.1%}){where}"
            )
        total, counted, diff = totals
        print(
            f"{preset}, {len(seeds)} scenes of {seconds:.0f} s: truth {total}, counted {counted} "
            f"({(counted - total) / max(total, 1):+.1%}); per class and direction off by {diff} ({diff / max(total, 1):.1%})"
        )
    return 0


def accuracy(args: argparse.Namespace) -> int:
    """Counts of the plugin with a real detector vs the simulator's ground truth."""
    from plugins.traffic_counting.scenes import Scene, SceneConfig, vertical_line

    spec = ModelSpec(
        path=str(args.model.resolve()),
        labels=str(args.labels.resolve()) if args.labels.exists() else None,
        output=args.layout,
        input=InputSpec(mean=args.mean, std=args.std),
    )
    registry = ModelRegistry({"detector": spec}, REPO)
    input_w, input_h = registry.get("detector").input_shape[2], registry.get("detector").input_shape[1]
    for preset in ("clean", "busy"):
        config = getattr(SceneConfig, preset)()
        scene = Scene(config, seed=args.seed)
        line = vertical_line(config, args.line_x)
        decoder: dict[str, Any] = {"grid_grouping": "peaks"}
        if args.layout == "centroid_grid":
            # nominal box per class: median ground-truth size, in model input pixels
            sizes: dict[str, list[tuple[float, float]]] = {}
            probe = Scene(config, seed=args.seed + 1000)
            for f in probe.frames(100, 2.0):
                for o in f.objects:
                    x1, y1, x2, y2 = o.box
                    sizes.setdefault(o.label, []).append(
                        ((x2 - x1) * input_w / config.width, (y2 - y1) * input_h / config.height)
                    )
            decoder["grid_box_size"] = {k: tuple(np.median(np.array(v), axis=0).tolist()) for k, v in sizes.items()}
        options = TrafficCountingOptions.model_validate(
            {
                "model": "detector",
                "anchor": "centre",
                "decoder": decoder,
                "lines": [{"name": line.name, "points": [list(line.p1), list(line.p2)]}],
                "motion": {"enabled": False},
                "score_threshold": args.score,
                "tracker": {"low_score": min(0.15, args.score)},
            }
        )
        truth, got = count_scene(registry, options, scene, line, args.seconds, args.fps)
        total, counted, diff = _count_errors(truth, got)
        print(
            f"{preset}: truth {total}, counted {counted} ({(counted - total) / max(total, 1):+.1%}); "
            f"sum of per-class/direction errors {diff} ({diff / max(total, 1):.1%})"
        )
        print(f"    truth   {truth}\n    counted {got}")
    return 0


def mqtt_latency(seconds: float, fps: float = 5.0) -> int:
    """Frame publish -> count event over a real broker, with the gateway as a separate process."""
    import json
    import subprocess
    import tempfile
    import threading

    import yaml

    from gateway.broker import LocalBroker, mosquitto_binary
    from gateway.config.models import MqttConfig
    from gateway.mqtt import make_client
    from plugins.traffic_counting.simulator import CameraSimulator

    if mosquitto_binary() is None:
        print("MQTT latency: skipped (mosquitto not installed)")
        return 0
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    pipeline = next(p for p in demo["pipelines"] if p["plugin"] == "traffic_counting")
    pipeline = {**pipeline, "inputs": ["bench/cams/+/frame"]}
    with (
        tempfile.TemporaryDirectory(prefix="bench-traffic-") as tmp,
        LocalBroker(workdir=Path(tmp) / "broker") as broker,
    ):
        config = {
            "gateway_id": "bench",
            "data_dir": str(Path(tmp) / "data"),
            "mqtt": {"host": broker.host, "port": broker.port},
            "models": {pipeline["options"]["model"]: demo["models"][pipeline["options"]["model"]]},
            "pipelines": [pipeline],
        }
        config_path = Path(tmp) / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(config))
        mqtt = MqttConfig(host=broker.host, port=broker.port)
        arrivals: list[tuple[float, dict[str, Any]]] = []
        online = threading.Event()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            now = time.time()
            if msg.topic.endswith("/status"):
                if msg.payload == b"online":
                    online.set()
                return
            arrivals.append((now, json.loads(msg.payload)))

        sub = make_client(mqtt, "bench-events")
        sub.on_message = on_message
        sub.connect(broker.host, broker.port)
        sub.subscribe([(f"edge/bench/{pipeline['name']}/event", 1), ("edge/bench/status", 1)])
        sub.loop_start()
        pub = make_client(mqtt, "bench-camera")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        log = (Path(tmp) / "gateway.log").open("wb")
        gw = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(config_path)], stdout=log, stderr=log)
        try:
            if not online.wait(60):
                print("MQTT latency: the gateway did not come online")
                return 1
            sim = CameraSimulator("cam1", fps=fps, preset="busy", seed=11, payload="json")
            published: list[float] = []
            start = time.time()
            for k in range(int(seconds * fps)):
                due = start + k / fps
                time.sleep(max(0.0, due - time.time()))
                now = time.time()
                ((suffix, payload),) = sim.messages(now)  # the frame's timestamp is its publish time
                pub.publish(f"bench/cams/{suffix}", payload, qos=0)
                published.append(now)
            time.sleep(2.0)
        finally:
            gw.terminate()
            gw.wait(30)
            log.close()
            sub.loop_stop()
            pub.loop_stop()
        events = [(t, doc["data"]) for t, doc in arrivals]
        if not events:
            print("MQTT latency: no crossing events received")
            return 1
        times = np.asarray(published)
        by_frame: list[float] = []
        past_line: list[float] = []
        for arrived, data in events:
            last = int(np.searchsorted(times, arrived, side="right")) - 1
            first_past = int(np.searchsorted(times, float(data["time"]) - 1e-6, side="left"))
            by_frame.append(arrived - times[last])
            past_line.append(arrived - times[min(first_past, len(times) - 1)])
        a50, a99 = np.percentile(np.asarray(by_frame) * 1000, [50, 99])
        b50, b99 = np.percentile(np.asarray(past_line) * 1000, [50, 99])
        period_ms = 1000.0 / fps
        print(f"MQTT frame publish -> count event ({len(events)} events, {len(published)} frames at {fps:g} fps):")
        print(f"    producing frame -> event: p50 {a50:.1f} ms, p99 {a99:.1f} ms (frame period {period_ms:.0f} ms)")
        print(f"    first frame past the line -> event: p50 {b50:.1f} ms, p99 {b99:.1f} ms")
        if a99 >= period_ms:
            print(
                "    (p99 exceeds a frame period: events may be attributed to a later frame than the one producing them)"
            )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=SSD_DIR / "model.tflite")
    parser.add_argument("--labels", type=Path, default=SSD_DIR / "labelmap.txt")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fps", type=float, default=10.0, help="timestamps given to the frames")
    parser.add_argument("--accuracy", action="store_true", help="counts vs the simulator's ground truth")
    parser.add_argument(
        "--demo-accuracy", action="store_true", help="the demo's traffic pipeline vs ground truth, per scene seed"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 5, 11, 12, 13, 14, 15, 16])
    parser.add_argument("--layout", default="ssd_postprocessed", choices=["ssd_postprocessed", "yolo", "centroid_grid"])
    parser.add_argument("--mean", type=float, default=127.5)
    parser.add_argument("--std", type=float, default=127.5)
    parser.add_argument("--score", type=float, default=0.5, help="score_threshold (accuracy mode)")
    parser.add_argument("--seconds", type=float, default=120.0, help="simulated time per scene (accuracy mode)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--line-x", type=float, default=0.5, help="counting line position, fraction of the width")
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="real-time MQTT latency run (0 = skip)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.demo_accuracy:
        return demo_accuracy(args.seeds, args.seconds)
    if args.accuracy:
        if not args.model.exists():
            print(f"detector {args.model} not found")
            return 2
        return accuracy(args)
    if not args.model.exists():
        print(f"detector {args.model} not found (the COCO SSD lives in ../shared/models); pass --model")
        return mqtt_latency(args.latency_seconds) if args.latency_seconds > 0 else 2
    spec = ModelSpec(
        path=str(args.model),
        labels=str(args.labels) if args.labels.exists() else None,
        output="ssd_postprocessed",
        input=InputSpec(mean=args.mean, std=args.std),
    )
    registry = ModelRegistry({"detector": spec}, REPO)
    frames, source = load_frames(args.frames)
    classes = ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
    print(f"detector: {args.model.name}; frames: {len(frames)} of {source}; runs: {args.runs}")

    bare_fps: list[float] = []
    bare_fps_still: list[float] = []
    plugin_fps: list[float] = []
    gated_fps: list[float] = []
    gated_share: list[float] = []
    lat: list[float] = []
    ev_lat: list[float] = []
    still = still_scene(frames)
    for _ in range(args.runs):
        bare = registry.get("detector")
        plugin = make_plugin(registry, gating=False, labels_classes=classes)
        fps, base, latencies, event_latencies = paired_run(plugin, bare, frames, args.fps)
        plugin.close()
        plugin_fps.append(fps)
        bare_fps.append(base)
        lat += latencies
        ev_lat += event_latencies

        plugin = make_plugin(registry, gating=True, labels_classes=classes)
        fps, base, _, _ = paired_run(plugin, bare, still, args.fps)
        (summary,) = plugin.summarize(0, 1)
        cam = summary.data["cameras"]["bench"]
        gated_share.append(cam["frames_gated"] / max(cam["frames"], 1))
        plugin.close()
        bare.close()
        gated_fps.append(fps)
        bare_fps_still.append(base)

    print(ratio_line("processed fps, no gating, vs bare detector", plugin_fps, bare_fps, "frames/s", 0.9))
    print(
        ratio_line(
            "handled fps, gating on a mostly still scene, vs bare detector", gated_fps, bare_fps_still, "frames/s", 3.0
        )
    )
    print(f"    frames skipped by the gate: {median(gated_share):.0%} (median over runs)")
    p50, p99 = np.percentile(np.asarray(lat) * 1000, [50, 99])
    print(f"per-frame latency (frame in -> outputs out), no gating: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    if ev_lat:
        e50, e99 = np.percentile(np.asarray(ev_lat) * 1000, [50, 99])
        print(f"latency of frames producing a crossing event: p50 {e50:.1f} ms, p99 {e99:.1f} ms (n={len(ev_lat)})")
    else:
        print("no crossing events in these frames")
    return mqtt_latency(args.latency_seconds) if args.latency_seconds > 0 else 0


if __name__ == "__main__":
    raise SystemExit(main())
