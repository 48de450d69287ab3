"""Train a recipe's model and write every deployable variant, reproducibly.

Steps, each optional where the recipe or the command line says so:

1. **distillation** (``--distill``): a larger teacher (``recipe.build("teacher")``) is trained first,
   then the shipped-size student learns from a blend of the true targets and the teacher's outputs
   (temperature-softened probabilities for classifiers, the raw outputs for regressors);
2. **magnitude pruning** (``--prune 0.5``): the smallest-magnitude weights of every kernel are zeroed,
   raising sparsity gradually to the target while fine-tuning, with the mask re-applied after
   every step so pruned weights stay at zero;
3. **conversion** to ``.tflite`` as float32, float16, dynamic-range and full int8 (calibrated on the
   recipe's representative samples), plus an ONNX export, all recorded with their SHA-256 in the
   ``manifest.json`` the engine verifies models against.

TensorFlow is imported here only, lazily: this module is build-time tooling (``[train]`` extra).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np

from gateway.inference.files import MANIFEST_NAME, sha256_bytes
from gateway.toolchain.recipe import ENTRY_POINT_GROUP, VARIANTS, Dataset, Recipe

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1


def _tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("the model toolchain needs TensorFlow: pip install 'edge-ai-gateway[train]'") from exc
    return tf


# --------------------------------------------------------------------------- recipes


def registered_recipes() -> dict[str, str]:
    """Recipe names and their ``module:Class`` from the ``edge_gateway.model_recipes`` entry points."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_recipe(reference: str) -> Recipe:
    """Instantiate a recipe by registered name or ``module:Class``."""
    target = registered_recipes().get(reference, reference)
    module_name, _, class_name = target.partition(":")
    if not class_name:
        known = ", ".join(sorted(registered_recipes())) or "none registered"
        raise SystemExit(f"unknown recipe {reference!r} (known: {known}; or give module:Class)")
    recipe = getattr(importlib.import_module(module_name), class_name)()
    if not isinstance(recipe, Recipe):
        raise SystemExit(f"{target} does not implement the Recipe protocol")
    return recipe


def load_recipes(references: Iterable[str] | None) -> list[Recipe]:
    """The recipes named, or every registered one."""
    names = list(references) if references else sorted(registered_recipes())
    if not names:
        raise SystemExit(f"no recipes registered in the {ENTRY_POINT_GROUP!r} entry-point group")
    return [load_recipe(n) for n in names]


def recipe_reference(recipe: Recipe) -> str:
    """``module:Class`` of a recipe instance (recorded in the manifest)."""
    return f"{type(recipe).__module__}:{type(recipe).__qualname__}"


# --------------------------------------------------------------------------- training


@dataclass
class BuildOptions:
    """How to build: seed, pruning target, distillation, epochs override, ONNX export."""

    seed: int = 0
    prune: float | None = None
    distill: bool = False
    epochs: int | None = None
    onnx: bool = True
    distill_alpha: float = 0.3
    temperature: float = 3.0


@dataclass
class BuildResult:
    """What a build produced: the files and the facts recorded in the manifest."""

    name: str
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def _is_classifier(model: Any) -> bool:
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "") == "softmax"


def _fit(model: Any, recipe: Recipe, ds: Dataset, epochs: int, callbacks: list[Any] | None = None) -> None:
    model.fit(
        ds.x_train,
        ds.y_train,
        validation_data=(ds.x_val, ds.y_val),
        epochs=epochs,
        batch_size=recipe.batch_size,
        shuffle=True,
        verbose=0,
        callbacks=callbacks or [],
    )


def _distilled_student(recipe: Recipe, ds: Dataset, epochs: int, options: BuildOptions) -> Any:
    """Train a teacher, then the student on a blend of true targets and the teacher's soft targets."""
    import keras
    from keras import ops

    teacher = recipe.build("teacher")
    teacher.compile(**recipe.compile_args())
    _fit(teacher, recipe, ds, epochs)
    teacher.trainable = False
    student = recipe.build("student")
    classifier = _is_classifier(student)
    alpha, temperature = options.distill_alpha, options.temperature

    class Distiller(keras.Model):  # type: ignore[misc]
        """The student, trained against the recipe's loss blended with matching the teacher."""

        def __init__(self) -> None:
            super().__init__()
            self.student = student
            self.teacher = teacher

        def call(self, x: Any, training: bool = False) -> Any:
            return self.student(x, training=training)

        def compute_loss(
            self, x: Any = None, y: Any = None, y_pred: Any = None, sample_weight: Any = None, training: bool = True
        ) -> Any:
            task = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
            target = self.teacher(x, training=False)
            if classifier:
                # softmax(z / T) is proportional to p ** (1 / T): soften probabilities without the logits.
                def soften(p: Any) -> Any:
                    logits = ops.log(ops.clip(p, 1e-7, 1.0)) / temperature
                    return ops.softmax(logits, axis=-1)

                soft_t, soft_s = soften(target), soften(y_pred)
                kl = ops.sum(
                    soft_t * (ops.log(ops.clip(soft_t, 1e-7, 1.0)) - ops.log(ops.clip(soft_s, 1e-7, 1.0))), axis=-1
                )
                match = ops.mean(kl) * temperature**2
            else:
                match = ops.mean(ops.square(target - y_pred))
            return alpha * task + (1.0 - alpha) * match

    distiller = Distiller()
    distiller.compile(**recipe.compile_args())
    _fit(distiller, recipe, ds, epochs)
    return student


def _prunable(model: Any) -> list[Any]:
    return [layer for layer in model.layers if getattr(layer, "kernel", None) is not None]


def _kernel_masks(model: Any, sparsity: float) -> list[np.ndarray]:
    """Per-kernel masks zeroing the ``ceil(sparsity * size)`` smallest-magnitude weights."""
    masks = []
    for layer in _prunable(model):
        weights = np.abs(np.asarray(layer.kernel)).reshape(-1)
        mask = np.ones_like(weights, dtype=np.float32)
        pruned = int(np.ceil(sparsity * weights.size))
        if pruned:
            mask[np.argpartition(weights, pruned - 1)[:pruned]] = 0.0
        masks.append(mask.reshape(np.shape(layer.kernel)))
    return masks


def measured_sparsity(model: Any) -> float:
    """Fraction of exactly-zero weights across the model's kernels."""
    kernels = [np.asarray(layer.kernel) for layer in _prunable(model)]
    total = sum(k.size for k in kernels)
    return float(sum(int((k == 0).sum()) for k in kernels) / total) if total else 0.0


def _prune(model: Any, recipe: Recipe, ds: Dataset, target: float, epochs: int) -> None:
    """Gradual magnitude pruning with fine-tuning (cubic schedule to ``target`` sparsity)."""
    import keras

    layers = _prunable(model)

    class MagnitudePruning(keras.callbacks.Callback):  # type: ignore[misc]
        """Recompute the mask at each epoch's scheduled sparsity; keep pruned weights at zero."""

        def __init__(self) -> None:
            super().__init__()
            self.masks: list[np.ndarray] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            ramp = min(1.0, (epoch + 1) / max(1, epochs - 1))
            sparsity = target * (1.0 - (1.0 - ramp) ** 3)
            self.masks = _kernel_masks(model, sparsity)
            self._apply()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self._apply()

        def _apply(self) -> None:
            for layer, mask in zip(layers, self.masks):
                layer.kernel.assign(np.asarray(layer.kernel) * mask)

    model.compile(**recipe.compile_args())
    _fit(model, recipe, ds, epochs, callbacks=[MagnitudePruning()])


def train(recipe: Recipe, ds: Dataset, options: BuildOptions) -> tuple[Any, dict[str, Any]]:
    """Train the shipped model of ``recipe`` as the options say; returns it with training facts."""
    import keras

    keras.backend.clear_session()  # fresh layer names: the same build gives the same bytes
    keras.utils.set_random_seed(options.seed)
    epochs = options.epochs or recipe.epochs
    facts: dict[str, Any] = {"epochs": epochs, "distilled": options.distill, "pruned_to": options.prune}
    if options.distill:
        model = _distilled_student(recipe, ds, epochs, options)
        facts["teacher_params"] = int(recipe.build("teacher").count_params())
    else:
        model = recipe.build("student")
        model.compile(**recipe.compile_args())
        _fit(model, recipe, ds, epochs)
    if options.prune:
        if not 0.0 < options.prune < 1.0:
            raise ValueError("pruning sparsity must be between 0 and 1")
        _prune(model, recipe, ds, options.prune, max(2, epochs // 2))
        facts["sparsity"] = round(measured_sparsity(model), 4)
    facts["params"] = int(model.count_params())
    keras_metrics = recipe.evaluate(lambda x: np.asarray(model.predict(x, verbose=0)), ds)
    facts["keras_metrics"] = {k: round(float(v), 6) for k, v in keras_metrics.items()}
    return model, facts


# --------------------------------------------------------------------------- conversion


def _representative(samples: np.ndarray) -> Iterator[list[np.ndarray]]:
    for sample in samples:
        yield [np.asarray(sample[np.newaxis], dtype=np.float32)]


def to_tflite(model: Any, variant: str, representative: np.ndarray) -> bytes:
    """Convert a Keras model to one ``.tflite`` variant."""
    tf = _tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: _representative(representative)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif variant != "float32":
        raise ValueError(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    with contextlib.redirect_stdout(io.StringIO()) as chatter, warnings.catch_warnings():
        # the Keras export prints its signature; "statistics for quantized inputs" concerns the old
        # TOCO converter only: full-int8 input ranges come from the representative dataset
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
        content = bytes(converter.convert())
    logger.debug("converter output: %s", chatter.getvalue())
    return content


def to_onnx(model: Any, input_shape: tuple[int, ...], float32_tflite: Path) -> tuple[bytes, str]:
    """Export to ONNX with tf2onnx: from the Keras graph, else from the float32 ``.tflite``."""
    tf = _tensorflow()
    import tf2onnx

    signature = [tf.TensorSpec((None, *input_shape[1:]), tf.float32, name="input")]
    try:
        function = tf.function(lambda x: model(x, training=False), input_signature=signature)
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=13)
        return proto.SerializeToString(), "tf2onnx.from_function"
    except Exception as exc:  # noqa: BLE001 - tf2onnx lags TensorFlow; the tflite path is the fallback
        logger.warning("ONNX export from the Keras graph failed (%s); converting the float32 .tflite", exc)
        proto, _ = tf2onnx.convert.from_tflite(str(float32_tflite), opset=13)
        return proto.SerializeToString(), "tf2onnx.from_tflite"


def _write(path: Path, content: bytes) -> dict[str, Any]:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)  # atomic: a watching gateway never sees half a model
    return {"file": path.name, "sha256": sha256_bytes(content), "bytes": len(content)}


def update_manifest(out_dir: Path, name: str, entry: dict[str, Any]) -> Path:
    """Merge one model's entry into ``out_dir/manifest.json`` (other models' entries are kept)."""
    path = out_dir / MANIFEST_NAME
    data: dict[str, Any] = {"format": MANIFEST_FORMAT, "models": {}}
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("models", {})[name] = entry
    data["models"] = dict(sorted(data["models"].items()))
    _write(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())
    return path


def build_recipe(recipe: Recipe, options: BuildOptions, out_dir: Path | None = None) -> BuildResult:
    """Train ``recipe`` and write all variants plus the manifest entry into ``out_dir``."""
    tf = _tensorflow()
    tf.config.experimental.enable_op_determinism()
    started = time.monotonic()
    out = Path(out_dir or recipe.package_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = recipe.dataset(options.seed)
    model, facts = train(recipe, ds, options)
    result = BuildResult(name=recipe.name, out_dir=out)
    variants: dict[str, Any] = {}
    for variant in VARIANTS:
        path = out / f"{recipe.name}_{variant}.tflite"
        variants[variant] = _write(path, to_tflite(model, variant, ds.representative))
        result.files[variant] = path
    if options.onnx:
        content, how = to_onnx(model, tuple(ds.x_train.shape), result.files["float32"])
        path = out / f"{recipe.name}.onnx"
        variants["onnx"] = _write(path, content) | {"exported_with": how}
        result.files["onnx"] = path
    result.manifest = {
        "version": recipe.version,
        "recipe": recipe_reference(recipe),
        "seed": options.seed,
        "training": facts,
        "tensorflow": tf.__version__,
        "variants": variants,
    }
    update_manifest(out, recipe.name, result.manifest)
    logger.info("built %s in %.1fs: %s", recipe.name, time.monotonic() - started, ", ".join(variants))
    return result


def main_build(args: argparse.Namespace) -> int:
    """``edge-gateway models build``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = BuildOptions(seed=args.seed, prune=args.prune, distill=args.distill, epochs=args.epochs, onnx=args.onnx)
    for recipe in load_recipes(args.recipe):
        result = build_recipe(recipe, options, Path(args.out) if args.out else None)
        training = result.manifest["training"]
        print(
            f"{recipe.name}: {training['keras_metrics']} params={training['params']}"
            + (f" sparsity={training['sparsity']}" if "sparsity" in training else "")
        )
        for variant, entry in result.manifest["variants"].items():
            print(f"  {variant:<8} {entry['bytes']:>9} B  {entry['sha256']}  {result.out_dir / entry['file']}")
    return 0
