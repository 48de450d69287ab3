"""The inference engine on real model files through the real interpreters (LiteRT and ONNX Runtime).

The committed models in ``tests/models/`` are the reference recipe's variants, built by
``edge-gateway models build --recipe reference --prune 0.5 --distill`` and listed with their SHA-256
in ``tests/models/manifest.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from gateway.inference import (
    DelegateSpec,
    Model,
    ModelFileError,
    ModelIntegrityError,
    ModelRegistry,
    ModelSpec,
    UnknownModelError,
)
from gateway.inference.cli import list_models, specs_from_manifest, verify_models
from gateway.inference.files import resolve_path, sha256_file
from gateway.toolchain.reference import ReferenceRegressor

MODELS = Path(__file__).parent / "models"
MANIFEST = json.loads((MODELS / "manifest.json").read_text())["models"]["reference_regressor"]
STEM = "reference_regressor"

# Full-int8 quantisation of the reference regressor (output range about 2.3, int8 output step ~0.009):
# on every test sample the int8 variant must stay within 0.1 of the float32 variant (~4 % of the range,
# ~11 output steps; measured max 0.077), and within 0.015 on average (measured 0.007).
INT8_TOLERANCE = 0.1
INT8_MEAN_TOLERANCE = 0.015


def reference_inputs(n: int = 200) -> np.ndarray:
    return ReferenceRegressor().dataset(seed=0).x_test[:n]


def load(variant: str, **overrides: object) -> Model:
    entry = MANIFEST["variants"][variant]
    spec = ModelSpec(path=entry["file"], sha256=entry["sha256"], **overrides)  # type: ignore[arg-type]
    return Model(f"{STEM}_{variant}", spec, MODELS)


def run_batch(model: Model, x: np.ndarray) -> np.ndarray:
    return np.concatenate([model.run(sample)[0] for sample in x])


@pytest.mark.parametrize("variant", ["float32", "float16", "dynamic", "int8", "onnx"])
def test_committed_variants_load_and_predict_the_task(variant: str) -> None:
    ds = ReferenceRegressor().dataset(seed=0)
    with load(variant) as model:
        assert model.info.sha256 == MANIFEST["variants"][variant]["sha256"]
        assert model.info.runtime == ("onnxruntime" if variant == "onnx" else "litert")
        assert model.input_shape == (1, 8)
        predictions = run_batch(model, ds.x_test[:300])
    assert predictions.dtype == np.float32 and predictions.shape == (300, 1)
    rmse = float(np.sqrt(np.mean((predictions - ds.y_test[:300]) ** 2)))
    # the target's standard deviation is about 0.5: a model that had not learnt would score near it
    assert rmse < 0.1, f"{variant}: rmse {rmse:.3f}"


def test_int8_variant_agrees_with_float32_within_tolerance() -> None:
    x = reference_inputs()
    with load("float32") as f32, load("int8") as i8:
        assert i8.inputs[0].dtype == np.int8 and i8.inputs[0].quantized
        assert i8.outputs[0].dtype == np.int8 and i8.outputs[0].quantized
        reference, quantised = run_batch(f32, x), run_batch(i8, x)
    difference = np.abs(reference - quantised)
    assert difference.max() < INT8_TOLERANCE
    assert difference.mean() < INT8_MEAN_TOLERANCE


def test_int8_model_takes_real_units_or_already_quantised_values() -> None:
    x = reference_inputs(20)
    with load("int8") as model:
        tensor = model.inputs[0]
        quantised = np.clip(np.rint(x / tensor.scale + tensor.zero_point), -128, 127).astype(np.int8)
        for real, raw in zip(x, quantised):
            np.testing.assert_array_equal(model.run(real)[0], model.run(raw)[0])


def test_batch_and_single_sample_calls_give_the_same_answer() -> None:
    x = reference_inputs(16)
    with load("float32") as model:
        batched = model.run(x)[0]
        single = run_batch(model, x)
    np.testing.assert_allclose(batched, single, rtol=1e-6, atol=1e-6)


def test_onnx_runtime_and_litert_give_the_same_answer() -> None:
    x = reference_inputs()
    with load("float32") as litert, load("onnx") as onnx:
        assert (litert.info.runtime, onnx.info.runtime) == ("litert", "onnxruntime")
        np.testing.assert_allclose(run_batch(onnx, x), run_batch(litert, x), rtol=1e-4, atol=1e-5)


def test_onnx_runtime_falls_back_to_cpu_when_an_execution_provider_is_absent() -> None:
    with load("onnx", delegates=["tensorrt", "cuda", "cpu"]) as model:
        assert model.info.delegate == "cpu"
        assert [a.delegate for a in model.info.fallbacks] == ["tensorrt", "cuda"]


def test_sha256_mismatch_in_config_is_refused() -> None:
    spec = ModelSpec(path=f"{STEM}_float32.tflite", sha256="0" * 64)
    with pytest.raises(ModelIntegrityError, match="SHA-256 mismatch"):
        Model("pinned", spec, MODELS)


def test_file_changed_behind_the_manifest_is_refused(tmp_path: Path) -> None:
    shutil.copy(MODELS / "manifest.json", tmp_path)
    shutil.copy(MODELS / f"{STEM}_int8.tflite", tmp_path / f"{STEM}_float32.tflite")  # wrong content
    with pytest.raises(ModelIntegrityError, match="refusing to load"):
        Model("swapped", ModelSpec(path=f"{STEM}_float32.tflite"), tmp_path)


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        Model("absent", ModelSpec(path="nowhere.tflite"), tmp_path)


def test_version_comes_from_the_manifest_unless_configured() -> None:
    with load("float32") as model:
        assert model.info.version == MANIFEST["version"]
    with load("float32", version="2024.1") as model:
        assert model.info.version == "2024.1"


def test_latency_statistics_count_every_call() -> None:
    with load("float32", warmup=3) as model:
        for sample in reference_inputs(50):
            model.run(sample)
        stats = model.stats()
    assert stats.count == 50
    assert 0.0 < stats.p50_ms <= stats.p95_ms


def test_registry_gives_each_caller_its_own_model_and_names_unknown_ones() -> None:
    registry = ModelRegistry(specs_from_manifest(MODELS), MODELS)
    assert f"{STEM}_int8" in registry.names()
    first, second = registry.get(f"{STEM}_int8"), registry.get(f"{STEM}_int8")
    try:
        assert first is not second
        assert first.info == second.info
    finally:
        first.close()
        second.close()
    with pytest.raises(UnknownModelError, match="declared: reference_regressor_dynamic"):
        registry.get("detector")


def test_labels_from_a_text_file(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("car\ntruck\nbus\n")
    shutil.copy(MODELS / f"{STEM}_float32.tflite", tmp_path)
    spec = ModelSpec(path=f"{STEM}_float32.tflite", labels="labels.txt")
    with Model("labelled", spec, tmp_path) as model:
        assert model.labels == ["car", "truck", "bus"]


def test_pkg_paths_resolve_inside_installed_packages() -> None:
    path = resolve_path("pkg://gateway.inference/spec.py", Path("/nonexistent"))
    assert path.is_file() and path.name == "spec.py"
    with pytest.raises(ModelFileError, match="not installed"):
        resolve_path("pkg://no_such_package_here/model.tflite", Path("."))


def test_models_verify_reports_runtime_and_fails_on_a_bad_model(tmp_path: Path) -> None:
    import io

    out = io.StringIO()
    specs = specs_from_manifest(MODELS)
    assert verify_models(specs, MODELS, out) == 0
    assert "litert/" in out.getvalue() and "onnxruntime/cpu" in out.getvalue()
    broken = dict(specs) | {"tampered": ModelSpec(path=f"{STEM}_int8.tflite", sha256="f" * 64)}
    out = io.StringIO()
    assert verify_models(broken, MODELS, out) == 1
    assert "tampered" in out.getvalue() and "FAILED" in out.getvalue()
    out = io.StringIO()
    assert list_models({"absent": ModelSpec(path="absent.tflite")}, tmp_path, out) == 1
    assert "MISSING" in out.getvalue()


# --------------------------------------------------------------------------- delegate chain

FAKE_DELEGATE_C = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
/* Mirrors TfLiteDelegate from tensorflow/lite/core/c/common.h. */
typedef struct TfLiteContext TfLiteContext;
typedef struct TfLiteDelegate {
  void* data_;
  int (*Prepare)(TfLiteContext*, struct TfLiteDelegate*);
  int (*CopyFromBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int, void*);
  int (*CopyToBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int, void*);
  void (*FreeBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int*);
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;
/* "ok" claims no node (the CPU runs everything), "fail_prepare" fails when applied to a graph,
   "fail_create" refuses to be created, like a driver that finds no device. */
static int prepare_ok(TfLiteContext* c, TfLiteDelegate* d) { (void)c; (void)d; return 0; }
static int prepare_fail(TfLiteContext* c, TfLiteDelegate* d) { (void)c; (void)d; return 1; }
TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n,
                                              void (*report_error)(const char*)) {
  const char* mode = "ok";
  for (size_t i = 0; i < n; i++) if (strcmp(keys[i], "mode") == 0) mode = values[i];
  if (strcmp(mode, "fail_create") == 0) {
    if (report_error) report_error("fake accelerator: no device found");
    return NULL;
  }
  TfLiteDelegate* d = calloc(1, sizeof(TfLiteDelegate));
  d->Prepare = strcmp(mode, "fail_prepare") == 0 ? prepare_fail : prepare_ok;
  return d;
}
void tflite_plugin_destroy_delegate(TfLiteDelegate* d) { free(d); }
"""


@pytest.fixture(scope="module")
def fake_delegate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the fake delegate library")
    directory = tmp_path_factory.mktemp("delegate")
    (directory / "fake_delegate.c").write_text(FAKE_DELEGATE_C)
    library = directory / "libfake_delegate.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(directory / "fake_delegate.c")], check=True
    )
    return library


def test_missing_delegate_library_falls_back_to_the_cpu_and_says_why() -> None:
    chain = [DelegateSpec(name="edgetpu", library="libedgetpu-not-installed.so.1"), "gpu"]
    with load("float32", delegates=chain) as model:
        assert model.info.delegate == "cpu"
        assert [a.delegate for a in model.info.fallbacks] == ["edgetpu", "gpu"]
        assert all(a.reason.startswith("OSError") for a in model.info.fallbacks)
        assert model.run(reference_inputs(1))[0].shape == (1, 1)


def test_library_that_is_no_delegate_is_skipped(fake_delegate: Path, tmp_path: Path) -> None:
    not_a_delegate = tmp_path / "libplain.so"
    (tmp_path / "plain.c").write_text("int answer(void) { return 42; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(not_a_delegate), str(tmp_path / "plain.c")], check=True)
    with load("float32", delegates=[DelegateSpec(library=str(not_a_delegate)), "xnnpack"]) as model:
        assert model.info.delegate == "xnnpack"
        assert "not an external delegate library" in model.info.fallbacks[0].reason


@pytest.mark.parametrize(("mode", "error"), [("fail_create", "ValueError"), ("fail_prepare", "RuntimeError")])
def test_delegate_that_loads_but_fails_falls_to_the_next(fake_delegate: Path, mode: str, error: str) -> None:
    chain = [
        DelegateSpec(name="accelerator", library=str(fake_delegate), options={"mode": mode}),
        DelegateSpec(name="backup", library=str(fake_delegate), options={"mode": "ok"}),
    ]
    with load("int8", delegates=chain) as model:
        assert model.info.delegate == "backup"
        (attempt,) = model.info.fallbacks
        assert attempt.delegate == "accelerator" and attempt.reason.startswith(error)
        assert model.run(reference_inputs(1))[0].shape == (1, 1)


def _edgetpu_dir(tmp_path: Path, *, with_variant: bool) -> Path:
    shutil.copy(MODELS / f"{STEM}_float32.tflite", tmp_path / "regressor.tflite")
    if with_variant:
        # stands in for the Edge TPU compiler's output: a different file of the same model
        shutil.copy(MODELS / f"{STEM}_int8.tflite", tmp_path / "regressor_edgetpu.tflite")
    return tmp_path


def test_edgetpu_delegate_runs_the_edgetpu_variant(fake_delegate: Path, tmp_path: Path) -> None:
    directory = _edgetpu_dir(tmp_path, with_variant=True)
    spec = ModelSpec(
        path="regressor.tflite",
        edgetpu_sha256=sha256_file(directory / "regressor_edgetpu.tflite"),
        delegates=[DelegateSpec(name="edgetpu", library=str(fake_delegate)), "cpu"],
    )
    with Model("tpu", spec, directory) as model:
        assert model.info.delegate == "edgetpu"
        assert model.info.path.endswith("regressor_edgetpu.tflite")
        assert model.info.sha256 == MANIFEST["variants"]["int8"]["sha256"]
        assert model.inputs[0].dtype == np.int8


def test_edgetpu_delegate_without_a_compiled_variant_moves_on(fake_delegate: Path, tmp_path: Path) -> None:
    directory = _edgetpu_dir(tmp_path, with_variant=False)
    spec = ModelSpec(path="regressor.tflite", delegates=[DelegateSpec(name="edgetpu", library=str(fake_delegate))])
    with Model("tpu", spec, directory) as model:
        assert model.info.delegate == "cpu"
        assert model.info.path.endswith("regressor.tflite")
        assert "edgetpu.tflite variant" in model.info.fallbacks[0].reason


def test_edgetpu_variant_with_a_wrong_hash_is_refused(fake_delegate: Path, tmp_path: Path) -> None:
    directory = _edgetpu_dir(tmp_path, with_variant=True)
    spec = ModelSpec(
        path="regressor.tflite",
        edgetpu_sha256="1" * 64,
        delegates=[DelegateSpec(name="edgetpu", library=str(fake_delegate))],
    )
    with pytest.raises(ModelIntegrityError):
        Model("tpu", spec, directory)


# --------------------------------------------------------------------------- hot reload


def _publish(directory: Path, source: Path) -> None:
    """Install a model the way a deployment does: new file and its checksum, each replaced atomically."""
    tmp = directory / "model.tflite.new"
    shutil.copy(source, tmp)
    tmp.replace(directory / "model.tflite")
    sidecar = directory / "model.tflite.sha256.new"
    sidecar.write_text(f"{sha256_file(directory / 'model.tflite')}  model.tflite\n")
    sidecar.replace(directory / "model.tflite.sha256")


def test_changed_model_file_is_verified_and_swapped_in(tmp_path: Path) -> None:
    _publish(tmp_path, MODELS / f"{STEM}_float32.tflite")
    x = reference_inputs(1)
    with Model("hot", ModelSpec(path="model.tflite", watch=True, watch_interval=0.01), tmp_path) as model:
        assert model.inputs[0].dtype == np.float32
        before = model.run(x)[0]
        _publish(tmp_path, MODELS / f"{STEM}_int8.tflite")
        assert model.reload_if_changed() is True
        assert model.info.sha256 == MANIFEST["variants"]["int8"]["sha256"]
        assert model.inputs[0].dtype == np.int8
        after = model.run(x)[0]
        assert np.abs(after - before).max() < INT8_TOLERANCE
        assert model.stats().reloads == 1


def test_run_picks_up_a_changed_file_by_itself(tmp_path: Path) -> None:
    import time

    _publish(tmp_path, MODELS / f"{STEM}_float32.tflite")
    with Model("hot", ModelSpec(path="model.tflite", watch=True, watch_interval=0.01), tmp_path) as model:
        _publish(tmp_path, MODELS / f"{STEM}_dynamic.tflite")
        time.sleep(0.02)
        model.run(reference_inputs(1))
        assert model.info.sha256 == MANIFEST["variants"]["dynamic"]["sha256"]


@pytest.mark.parametrize("fault", ["corrupt", "hash_mismatch", "other_shape"])
def test_failed_reload_keeps_the_previous_model(tmp_path: Path, fault: str) -> None:
    _publish(tmp_path, MODELS / f"{STEM}_float32.tflite")
    x = reference_inputs(1)
    with Model("hot", ModelSpec(path="model.tflite", watch=True), tmp_path) as model:
        serving = model.info
        expected = model.run(x)[0]
        if fault == "corrupt":
            bad = tmp_path / "bad.bin"
            bad.write_bytes(b"TFL3" + bytes(200))
            _publish(tmp_path, bad)
        elif fault == "hash_mismatch":
            shutil.copy(MODELS / f"{STEM}_int8.tflite", tmp_path / "model.tflite")  # checksum not updated
        else:
            ssd = Path(__file__).resolve().parents[2] / "shared/models/ssd_mobilenet_v1_coco/model.tflite"
            if not ssd.is_file():
                pytest.skip("needs ../shared/models/ssd_mobilenet_v1_coco for a model of another shape")
            _publish(tmp_path, ssd)
        assert model.reload_if_changed() is False
        assert model.info == serving
        np.testing.assert_array_equal(model.run(x)[0], expected)
        assert model.stats().reload_failures == 1
        assert model.reload_if_changed() is False  # the rejected file is not retried until it changes
        assert model.stats().reload_failures == 1
        _publish(tmp_path, MODELS / f"{STEM}_float16.tflite")  # a good file later is adopted
        assert model.reload_if_changed() is True
        assert model.info.sha256 == MANIFEST["variants"]["float16"]["sha256"]


def test_concurrent_callers_and_reloads_never_see_a_broken_model(tmp_path: Path) -> None:
    _publish(tmp_path, MODELS / f"{STEM}_float32.tflite")
    x = reference_inputs(64)
    with Model("hot", ModelSpec(path="model.tflite"), tmp_path) as model:
        reference = run_batch(model, x)
        errors: list[BaseException] = []
        stop = threading.Event()

        def caller() -> None:
            try:
                while not stop.is_set():
                    out = run_batch(model, x)
                    if np.abs(out - reference).max() >= INT8_TOLERANCE:
                        raise AssertionError("a call returned a result of neither model")
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=caller) for _ in range(3)]
        for t in threads:
            t.start()
        for variant in ["int8", "float32", "int8", "dynamic", "float16"]:
            _publish(tmp_path, MODELS / MANIFEST["variants"][variant]["file"])
            assert model.reload_if_changed() is True
        stop.set()
        for t in threads:
            t.join()
        assert errors == []
        assert model.stats().reloads == 5


def test_models_commands_read_the_gateway_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    shutil.copy(MODELS / f"{STEM}_int8.tflite", tmp_path)
    entry = MANIFEST["variants"]["int8"]
    (tmp_path / "gateway.yaml").write_text(
        "models:\n"
        "  regressor:\n"
        f"    path: {entry['file']}\n"
        f"    sha256: {entry['sha256']}\n"
        "    delegates: [edgetpu, xnnpack]\n"
    )
    assert main(["models", "verify", "-c", str(tmp_path / "gateway.yaml")]) == 0
    out = capsys.readouterr().out
    assert "regressor" in out and "litert/xnnpack" in out and "fell back: edgetpu: OSError" in out
    (tmp_path / entry["file"]).write_bytes(b"not a model")
    assert main(["models", "verify", "-c", str(tmp_path / "gateway.yaml")]) == 1
    assert "SHA-256 mismatch" in capsys.readouterr().out


def test_registry_describes_the_models_in_use() -> None:
    registry = ModelRegistry(specs_from_manifest(MODELS), MODELS)
    first, second = registry.get(f"{STEM}_int8"), registry.get(f"{STEM}_int8")
    for sample in reference_inputs(5):
        first.run(sample)
        second.run(sample)
    status = registry.describe()
    in_use = status[f"{STEM}_int8"]
    assert in_use["loaded"] and in_use["instances"] == 2 and in_use["calls"] == 10
    assert in_use["runtime"] == "litert" and in_use["delegate"] == "cpu"
    assert status[f"{STEM}_float32"] == {"loaded": False}
    first.close()
    assert registry.describe()[f"{STEM}_int8"]["instances"] == 1
    second.close()
    with pytest.raises(RuntimeError, match="closed"):
        second.run(reference_inputs(1))


def test_tflite_runtime_is_the_fallback_when_litert_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    import ai_edge_litert.interpreter as litert

    # 32-bit Arm has no LiteRT wheel: stand tflite_runtime in with the same interpreter API
    shim = types.ModuleType("tflite_runtime.interpreter")
    shim.Interpreter = litert.Interpreter  # type: ignore[attr-defined]
    shim.load_delegate = litert.load_delegate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", shim)
    with load("int8") as model:
        assert model.info.runtime == "tflite_runtime"
        assert model.run(reference_inputs(1))[0].shape == (1, 1)


def test_no_tflite_interpreter_installed_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from gateway.inference import RuntimeUnavailableError

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(RuntimeUnavailableError, match="install ai-edge-litert"):
        load("int8")
    with pytest.raises(RuntimeUnavailableError, match="tflite_runtime"):
        load("int8", runtime="tflite_runtime")


def test_wrong_input_shape_is_a_clear_error_and_the_model_keeps_working() -> None:
    with load("int8") as model:
        with pytest.raises(ValueError, match=r"expects shape \(1, 8\)"):
            model.run(np.zeros((4, 7), np.float32))
        assert model.run(np.zeros((4, 8), np.float32))[0].shape == (4, 1)  # dynamic batch is fine
        assert model.run(np.zeros(8, np.float32))[0].shape == (1, 1)


def test_touching_the_file_without_changing_it_is_not_a_reload(tmp_path: Path) -> None:
    import os

    _publish(tmp_path, MODELS / f"{STEM}_float32.tflite")
    with Model("hot", ModelSpec(path="model.tflite", watch=True), tmp_path) as model:
        stat = os.stat(tmp_path / "model.tflite")
        os.utime(tmp_path / "model.tflite", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
        assert model.reload_if_changed() is False
        assert model.stats().reloads == 0 and model.stats().reload_failures == 0
        assert model.reload_if_changed() is False  # and the new fingerprint is remembered


def test_model_spec_rejects_typos_and_malformed_digests() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ModelSpec.model_validate({"path": "m.tflite", "delegate": ["gpu"]})
    with pytest.raises(ValidationError, match="64-character hexadecimal"):
        ModelSpec(path="m.tflite", sha256="abc123")
    with pytest.raises(ValidationError, match="needs a name or a library"):
        ModelSpec.model_validate({"path": "m.tflite", "delegates": [{"options": {"device": "usb"}}]})
    spec = ModelSpec.model_validate(
        {"path": "m.tflite", "sha256": "AB" * 32, "delegates": ["edgetpu", {"library": "/opt/libnpu.so"}]}
    )
    assert spec.sha256 == "ab" * 32
    assert [d.label for d in spec.delegate_chain()] == ["edgetpu", "libnpu.so"]
