"""How a model is declared in the gateway's configuration (the ``models:`` section).

Every field is titled and described so the generated JSON schema doubles as the reference
documentation. Paths are relative to the configuration file's directory, or ``pkg://<package>/<path>``
for models shipped inside a Python package (resolved with :mod:`importlib.resources`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

RuntimeName = Literal["auto", "litert", "tflite_runtime", "onnxruntime"]
OutputLayout = Literal["ssd_postprocessed", "yolo", "centroid_grid", "raw"]


class DelegateSpec(BaseModel):
    """One entry of a delegate chain given in full: a known delegate name and/or an external library.

    ``name`` alone picks a known delegate (``edgetpu``, ``gpu``) with its usual library; ``library``
    points at any external delegate shared library implementing ``tflite_plugin_create_delegate``.
    For ONNX Runtime the name is an execution provider (``tensorrt``, ``cuda``, ``cpu`` or its full
    ``...ExecutionProvider`` name) and ``options`` are its provider options.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        default=None,
        title="Delegate name",
        description="Known delegate (edgetpu, gpu, xnnpack, cpu) or ONNX Runtime execution provider; "
        "defaults to the library's file name.",
    )
    library: str | None = Field(
        default=None,
        title="Delegate library",
        description="Path or soname of an external delegate shared library (overrides the known default).",
    )
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        title="Delegate options",
        description="Options passed to the delegate (e.g. {device: usb} for the Edge TPU).",
    )

    @property
    def label(self) -> str:
        """The name used in logs, metrics and :class:`~gateway.inference.ModelInfo`."""
        if self.name:
            return self.name
        assert self.library is not None
        return self.library.rsplit("/", 1)[-1]

    def model_post_init(self, __context: object) -> None:
        if not self.name and not self.library:
            raise ValueError("a delegate needs a name or a library")


class InputSpec(BaseModel):
    """What the model expects as input, for plugins that prepare images or feature vectors.

    Pixel normalisation is ``real = (pixel - mean) / std`` per channel, applied in ``colour`` order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: tuple[int, int] | None = Field(
        default=None,
        title="Input size",
        description="Width and height images are resized to; None takes the model's own input shape.",
    )
    colour: Literal["RGB", "BGR"] = Field(
        default="RGB", title="Colour order", description="Channel order the model was trained with."
    )
    mean: float | tuple[float, float, float] = Field(
        default=0.0, title="Normalisation mean", description="Subtracted from each pixel (0..255 scale)."
    )
    std: float | tuple[float, float, float] = Field(
        default=1.0, title="Normalisation std", description="Divides each pixel after subtracting the mean."
    )


class ModelSpec(BaseModel):
    """A model the gateway loads: file, integrity, labels, input/output conventions and how to run it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(
        title="Model file",
        description="A .tflite or .onnx file, relative to the config file's directory, "
        "or pkg://<package>/<relative path> for a model shipped in a Python package.",
    )
    sha256: str | None = Field(
        default=None,
        title="SHA-256",
        description="Expected SHA-256 of the file; a mismatch refuses the model. When unset, a "
        "manifest.json or <file>.sha256 beside the model is used if present.",
    )
    version: str | None = Field(
        default=None,
        title="Version",
        description='Model version stamped on results; defaults to the manifest\'s version, else "unversioned".',
    )
    labels: list[str] | str | None = Field(
        default=None,
        title="Labels",
        description="Class names, or the path of a text file with one label per line.",
    )
    input: InputSpec = Field(
        default_factory=InputSpec, title="Input", description="Input size, colour order and normalisation."
    )
    output: OutputLayout = Field(
        default="raw",
        title="Output layout",
        description="How the outputs are arranged, for the decoder of the plugin using the model.",
    )
    runtime: RuntimeName = Field(
        default="auto",
        title="Runtime",
        description="auto picks ONNX Runtime for .onnx files, otherwise LiteRT, then tflite-runtime.",
    )
    delegates: list[str | DelegateSpec] = Field(
        default_factory=list,
        title="Delegate chain",
        description="Tried in order (e.g. [edgetpu, gpu, xnnpack]); a delegate that fails to load is "
        "logged and the next is tried; the CPU is the last resort. With onnxruntime: execution providers.",
    )
    num_threads: int | None = Field(
        default=None, ge=1, title="Threads", description="CPU threads for the interpreter (None: runtime default)."
    )
    warmup: int = Field(
        default=1, ge=0, title="Warm-up runs", description="Invocations on zeros at load, before first use."
    )
    watch: bool = Field(
        default=False,
        title="Hot reload",
        description="Reload the model when its file changes on disk (verified first; the previous model "
        "stays in service if the new one fails).",
    )
    watch_interval: float = Field(
        default=2.0, gt=0, title="Watch interval", description="Seconds between checks of the file on disk."
    )
    edgetpu_sha256: str | None = Field(
        default=None,
        title="Edge TPU variant SHA-256",
        description="Expected SHA-256 of the <stem>_edgetpu.tflite variant used with the edgetpu delegate.",
    )

    @field_validator("sha256", "edgetpu_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("must be a 64-character hexadecimal SHA-256 digest")
        return value

    def delegate_chain(self) -> list[DelegateSpec]:
        """The delegate chain with plain names expanded to :class:`DelegateSpec`."""
        return [DelegateSpec(name=d) if isinstance(d, str) else d for d in self.delegates]
