"""Inference engine benchmark: per-call overhead against the bare interpreter, and the variants table.

For each model, the same input goes through (a) a bare ``ai_edge_litert`` Interpreter driven by hand
(``set_tensor``/``invoke``/``get_tensor``, plus hand-written quantisation for int8 models), and (b) the
gateway's :class:`~gateway.inference.Model` (real units in and out, statistics, reload check, lock).
Both run in the same process, in alternating blocks, several rounds (see :func:`paired_round`);
the median of the rounds' throughput ratios engine/bare is printed with their range. Target: >= 0.95 on the models the gateway ships.

    python bench/inference.py [--rounds 7] [--threads 1] [--no-table]

The second part measures every variant of the reference recipe (and of every registered recipe whose
models are built) exactly as ``edge-gateway models report`` does, and prints the table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from gateway.inference import Model, ModelSpec  # noqa: E402
from gateway.toolchain.reference import ReferenceRegressor  # noqa: E402

SSD = REPO.parent / "shared" / "models" / "ssd_mobilenet_v1_coco" / "model.tflite"


def bare_call(path: Path, threads: int, x: np.ndarray) -> Callable[[], list[np.ndarray]]:
    """The hand-written loop a plugin would otherwise contain."""
    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    scale, zero = inp["quantization"]
    if inp["dtype"] != x.dtype and scale:
        info = np.iinfo(inp["dtype"])

        def feed() -> np.ndarray:
            quantised: np.ndarray = np.clip(np.rint(x / scale + zero), info.min, info.max).astype(inp["dtype"])
            return quantised
    else:

        def feed() -> np.ndarray:
            return x

    def dequantise(detail: dict[str, Any], value: np.ndarray) -> np.ndarray:
        out_scale, out_zero = detail["quantization"]
        real: np.ndarray = (value.astype(np.float32) - out_zero) * out_scale if out_scale else value
        return real

    def call() -> list[np.ndarray]:
        interpreter.set_tensor(inp["index"], feed())
        interpreter.invoke()
        return [dequantise(d, interpreter.get_tensor(d["index"])) for d in outputs]

    return call


def paired_round(
    bare: Callable[[], object], engine: Callable[[], object], block: int, pairs: int
) -> tuple[float, float]:
    """One round: ``pairs`` alternating blocks of ``block`` calls each; median seconds per call of each.

    Alternating blocks (and which side goes first) expose both sides to the same machine conditions;
    the median over blocks ignores the blocks another process disturbed.
    """
    bare_times: list[float] = []
    engine_times: list[float] = []
    for i in range(pairs):
        order = [(bare, bare_times), (engine, engine_times)]
        for call, times in order if i % 2 == 0 else reversed(order):
            start = time.perf_counter()
            for _ in range(block):
                call()
            times.append((time.perf_counter() - start) / block)
    return statistics.median(bare_times), statistics.median(engine_times)


def overhead(name: str, path: Path, x: np.ndarray, threads: int, rounds: int, block: int, pairs: int) -> float:
    """Print and return the median over rounds of the throughput ratio engine / bare interpreter."""
    bare = bare_call(path, threads, x)
    model = Model(name, ModelSpec(path=path.name, num_threads=threads, warmup=5), path.parent)

    def engine() -> list[np.ndarray]:
        return model.run(x)

    np.testing.assert_allclose(engine()[0], bare()[0], rtol=1e-5, atol=1e-5)  # same model, same answer
    for _ in range(3):
        bare(), engine()
    ratios, bare_s, engine_s = [], [], []
    for _ in range(rounds):
        b, e = paired_round(bare, engine, block, pairs)
        bare_s.append(b)
        engine_s.append(e)
        ratios.append(b / e)  # throughput ratio: engine calls/s over bare calls/s
    ratio = statistics.median(ratios)
    b, e = statistics.median(bare_s), statistics.median(engine_s)
    print(
        f"{name:<32} bare {b * 1e6:>10.1f} us  engine {e * 1e6:>10.1f} us  "
        f"ratio {ratio:.3f} (rounds {min(ratios):.3f}..{max(ratios):.3f})  overhead {(e - b) * 1e6:+.2f} us/call"
    )
    model.close()
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--invokes", type=int, default=500, help="invocations per variant for the table")
    parser.add_argument("--no-table", dest="table", action="store_false")
    args = parser.parse_args()

    models = REPO / "tests" / "models"
    sample = ReferenceRegressor().dataset(0).x_test[:1]
    print(f"engine vs bare interpreter, {args.threads} thread(s), median of {args.rounds} rounds:")
    for variant in ("float32", "int8"):
        path = models / f"reference_regressor_{variant}.tflite"
        overhead(f"reference_regressor_{variant}", path, sample, args.threads, args.rounds, 200, 25)
    # already-quantised input: no quantisation on either side, only the output is dequantised
    int8 = models / "reference_regressor_int8.tflite"
    raw = Model("probe", ModelSpec(path=int8.name), int8.parent).inputs[0]
    quantised = np.clip(np.rint(sample / raw.scale + raw.zero_point), -128, 127).astype(np.int8)
    overhead("reference_regressor_int8 (int8 in)", int8, quantised, args.threads, args.rounds, 200, 25)
    if SSD.is_file():
        frame = np.random.default_rng(0).integers(0, 256, size=(1, 300, 300, 3), dtype=np.uint8)
        overhead("ssd_mobilenet_v1_coco (uint8)", SSD, frame, args.threads, max(3, args.rounds // 2), 1, 15)
    else:
        print(f"(skipping the detector: {SSD} not present)")

    if args.table:
        from gateway.toolchain.build import load_recipe, registered_recipes
        from gateway.toolchain.report import _fmt_ms, report_recipe

        recipes = [ReferenceRegressor()] + [load_recipe(n) for n in sorted(registered_recipes()) if n != "reference"]
        print("\nvariants (median of", args.invokes, "invokes; task metric on the held-out split):")
        for recipe in recipes:
            directory = REPO / recipe.package_dir
            if not (directory / "manifest.json").is_file():
                print(f"{recipe.name}: not built ({directory})")
                continue
            _, rows = report_recipe(recipe, directory, 0, args.invokes)
            for r in rows:
                metrics = " ".join(f"{k}={v:.4g}" for k, v in r.metrics.items())
                print(
                    f"{r.model:<24} {r.variant:<8} {r.size_bytes:>9,} B  gzip {r.gzip_bytes:>9,} B  "
                    f"1t {_fmt_ms(r.latency_ms[1]):>7} ms  2t {_fmt_ms(r.latency_ms[2]):>7} ms  {metrics}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
