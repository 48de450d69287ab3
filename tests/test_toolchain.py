"""The model toolchain: train, prune, distil, convert to every variant, export ONNX, report.

Builds tiny recipes defined here (seconds each) into temporary directories; needs TensorFlow (the
``[train]`` extra) and is skipped without it. The committed reference models are checked without it.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.inference import Model, ModelSpec
from gateway.inference.cli import specs_from_manifest, verify_models
from gateway.inference.files import sha256_file
from gateway.toolchain.recipe import VARIANTS, Dataset, Recipe
from gateway.toolchain.reference import ReferenceRegressor

MODELS = Path(__file__).parent / "models"


class TinyRegressor:
    """Four features to a noisy linear-plus-square target; an MLP small enough to train in a second."""

    name = "tiny_regressor"
    version = "0.1.0"
    package_dir = "unused"
    epochs = 6
    batch_size = 32

    def dataset(self, seed: int) -> Dataset:
        rng = np.random.default_rng(seed)
        x = rng.uniform(-1, 1, size=(900, 4)).astype(np.float32)
        y = (x @ np.array([0.5, -0.3, 0.2, 0.1], np.float32) + 0.4 * x[:, 0] ** 2)[:, None].astype(np.float32)
        return Dataset(x[:600], y[:600], x[600:700], y[600:700], x[700:], y[700:], representative=x[:100])

    def build(self, role: str) -> Any:
        import keras

        width = 64 if role == "teacher" else 32
        return keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(width, activation="relu"), keras.layers.Dense(1)]
        )

    def compile_args(self) -> dict[str, Any]:
        import keras

        return {"optimizer": keras.optimizers.Adam(1e-2), "loss": "mse"}

    def evaluate(self, predict: Callable[[np.ndarray], np.ndarray], ds: Dataset) -> dict[str, float]:
        error = np.asarray(predict(ds.x_test)).reshape(-1) - ds.y_test.reshape(-1)
        return {"rmse": float(np.sqrt(np.mean(error**2)))}


class TinyClassifier(TinyRegressor):
    """Three classes by which feature is largest: exercises distillation on softened probabilities."""

    name = "tiny_classifier"
    epochs = 8

    def dataset(self, seed: int) -> Dataset:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(900, 4)).astype(np.float32)
        y = np.argmax(x[:, :3], axis=1).astype(np.int64)
        return Dataset(x[:600], y[:600], x[600:700], y[600:700], x[700:], y[700:], representative=x[:100])

    def build(self, role: str) -> Any:
        import keras

        width = 64 if role == "teacher" else 16
        return keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(width, activation="relu"),
                keras.layers.Dense(3, activation="softmax"),
            ]
        )

    def compile_args(self) -> dict[str, Any]:
        import keras

        return {"optimizer": keras.optimizers.Adam(1e-2), "loss": "sparse_categorical_crossentropy"}

    def evaluate(self, predict: Callable[[np.ndarray], np.ndarray], ds: Dataset) -> dict[str, float]:
        return {"accuracy": float(np.mean(np.argmax(predict(ds.x_test), axis=1) == ds.y_test))}


def test_recipes_satisfy_the_protocol() -> None:
    for recipe in (ReferenceRegressor(), TinyRegressor(), TinyClassifier()):
        assert isinstance(recipe, Recipe)


def test_committed_reference_models_match_their_manifest_and_training_metrics() -> None:
    manifest = json.loads((MODELS / "manifest.json").read_text())["models"]["reference_regressor"]
    for entry in manifest["variants"].values():
        assert sha256_file(MODELS / entry["file"]) == entry["sha256"]
    recipe = ReferenceRegressor()
    ds = recipe.dataset(manifest["seed"])
    spec = ModelSpec(path=manifest["variants"]["float32"]["file"])
    with Model("reference", spec, MODELS) as model:
        metrics = recipe.evaluate(lambda x: model.run(x)[0], ds)
    # the float32 .tflite computes what the trained Keras model computed
    assert metrics["rmse"] == pytest.approx(manifest["training"]["keras_metrics"]["rmse"], abs=1e-4)
    assert manifest["training"]["sparsity"] >= 0.5 and manifest["training"]["distilled"]
    with Model("dynamic", ModelSpec(path=manifest["variants"]["dynamic"]["file"]), MODELS) as model:
        assert model.inputs[0].dtype == np.float32  # dynamic range: float in and out ...
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=str(MODELS / manifest["variants"]["dynamic"]["file"])).get_tensor_details()
    assert any(np.dtype(d["dtype"]) == np.int8 for d in details)  # ... int8 weights inside


# --------------------------------------------------------------------------- builds (need TensorFlow)


@pytest.fixture(scope="module")
def build() -> Callable[..., Any]:
    pytest.importorskip("tensorflow", reason="the toolchain needs TensorFlow (the [train] extra)")
    from gateway.toolchain.build import BuildOptions, build_recipe

    def run(recipe: Any, out: Path, **options: Any) -> Any:
        return build_recipe(recipe, BuildOptions(**options), out)

    return run


@pytest.fixture(scope="module")
def plain_build(build: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build(TinyRegressor(), tmp_path_factory.mktemp("plain"))


def test_build_writes_every_variant_listed_with_its_hash(plain_build: Any) -> None:
    out: Path = plain_build.out_dir
    manifest = json.loads((out / "manifest.json").read_text())["models"]["tiny_regressor"]
    assert set(manifest["variants"]) == {*VARIANTS, "onnx"}
    for entry in manifest["variants"].values():
        assert sha256_file(out / entry["file"]) == entry["sha256"]
        assert (out / entry["file"]).stat().st_size == entry["bytes"]
    report = io.StringIO()
    assert verify_models(specs_from_manifest(out), out, report) == 0, report.getvalue()


def test_variants_have_the_types_their_names_promise(plain_build: Any) -> None:
    from ai_edge_litert.interpreter import Interpreter

    out: Path = plain_build.out_dir
    types = {}
    stored = {}
    for variant in VARIANTS:
        with Model(variant, ModelSpec(path=f"tiny_regressor_{variant}.tflite"), out) as model:
            types[variant] = (model.inputs[0].dtype, model.outputs[0].dtype, model.inputs[0].quantized)
        details = Interpreter(model_path=str(out / f"tiny_regressor_{variant}.tflite")).get_tensor_details()
        stored[variant] = {np.dtype(d["dtype"]).name for d in details}
    assert "float16" in stored["float16"] and "float16" not in stored["float32"]
    # dynamic-range quantisation leaves kernels under 1024 weights in float: this model's are all small
    assert "int8" not in stored["dynamic"] and stored["dynamic"] == stored["float32"]
    assert types["int8"] == (np.dtype(np.int8), np.dtype(np.int8), True)
    for variant in ("float32", "float16", "dynamic"):
        assert types[variant] == (np.dtype(np.float32), np.dtype(np.float32), False)


def test_build_is_reproducible(build: Callable[..., Any], plain_build: Any, tmp_path: Path) -> None:
    again = build(TinyRegressor(), tmp_path, onnx=False)
    first = json.loads((plain_build.out_dir / "manifest.json").read_text())["models"]["tiny_regressor"]
    second = json.loads((tmp_path / "manifest.json").read_text())["models"]["tiny_regressor"]
    for variant in VARIANTS:
        assert first["variants"][variant]["sha256"] == second["variants"][variant]["sha256"], variant
    assert again.manifest["training"] == first["training"]


def test_pruning_and_distillation(build: Callable[..., Any], plain_build: Any, tmp_path: Path) -> None:
    result = build(TinyClassifier(), tmp_path, prune=0.6, distill=True, onnx=False)
    training = result.manifest["training"]
    assert training["distilled"] and training["teacher_params"] > training["params"]
    assert training["sparsity"] >= 0.6
    # the pruned zeros survive conversion: the float32 file compresses far better than its size suggests
    content = (tmp_path / "tiny_classifier_float32.tflite").read_bytes()
    assert len(gzip.compress(content)) < 0.8 * len(content)
    recipe = TinyClassifier()
    ds = recipe.dataset(0)
    with Model("classifier", ModelSpec(path="tiny_classifier_int8.tflite"), tmp_path) as model:
        accuracy = recipe.evaluate(lambda x: model.run(x)[0], ds)["accuracy"]
    assert accuracy > 0.8  # three balanced classes: chance is 1/3
    assert training["keras_metrics"]["accuracy"] - accuracy < 0.05  # int8 costs little


def test_report_measures_every_variant_through_the_engine(plain_build: Any) -> None:
    from gateway.toolchain.report import markdown, report_recipe

    recipe = TinyRegressor()
    entry, rows = report_recipe(recipe, plain_build.out_dir, seed=0, invokes=30)
    assert {r.variant for r in rows} == {*VARIANTS, "onnx"}
    by_variant = {r.variant: r for r in rows}
    assert by_variant["onnx"].runtime == "onnxruntime/cpu"
    assert all(r.latency_ms[1] > 0 and r.latency_ms[2] > 0 for r in rows)
    float_rmse = by_variant["float32"].metrics["rmse"]
    assert float_rmse < 0.2
    assert by_variant["int8"].metrics["rmse"] < float_rmse + 0.05
    page = markdown([(recipe, plain_build.out_dir, entry, rows)], invokes=30)
    table = [line for line in page.splitlines() if line.startswith("| ") and "`tiny_regressor" in line]
    assert len(table) == 5
    assert all(r.sha256[:16] in page for r in rows)


def test_report_rewrites_only_its_own_part_of_the_docs_page(tmp_path: Path) -> None:
    from gateway.toolchain.report import BEGIN_MARK, END_MARK, write_report

    page = tmp_path / "models.md"
    write_report(page, "first table")
    assert page.read_text().startswith("# Models") and "first table" in page.read_text()
    page.write_text("# Models\n\nHand-written introduction.\n\n" + page.read_text().split("\n", 2)[2] + "\nFooter.\n")
    write_report(page, "second table")
    text = page.read_text()
    assert "Hand-written introduction." in text and "Footer." in text
    assert "second table" in text and "first table" not in text
    assert text.count(BEGIN_MARK) == 1 and text.count(END_MARK) == 1


def test_report_of_some_models_keeps_the_other_models_sections(tmp_path: Path) -> None:
    from gateway.toolchain.report import write_report

    page = tmp_path / "models.md"
    write_report(page, "How it was measured.\n\n### alpha 1.0.0\n\nalpha table\n\n### beta 1.0.0\n\nbeta table 1\n")
    write_report(page, "Measured again.\n\n### beta 2.0.0\n\nbeta table 2\n\n### gamma 1.0.0\n\ngamma table\n")
    text = page.read_text()
    assert "Measured again." in text and "How it was measured." not in text
    assert "alpha table" in text and "beta table 2" in text and "beta table 1" not in text
    assert text.index("### alpha") < text.index("### beta 2.0.0") < text.index("### gamma")


def test_models_build_and_report_commands(
    build: Callable[..., Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    recipe = f"{__name__}:TinyRegressor"
    out = tmp_path / "models"
    assert main(["models", "build", "--recipe", recipe, "--out", str(out), "--epochs", "2", "--no-onnx"]) == 0
    printed = capsys.readouterr().out
    assert "tiny_regressor" in printed and "int8" in printed
    assert {p.name for p in out.iterdir()} == {"manifest.json"} | {f"tiny_regressor_{v}.tflite" for v in VARIANTS}
    page = tmp_path / "models.md"
    args = ["models", "report", "--recipe", recipe, "--dir", str(out), "--output", str(page), "--invokes", "20"]
    assert main(args) == 0
    assert page.read_text().count("| `tiny_regressor_") == len(VARIANTS)
