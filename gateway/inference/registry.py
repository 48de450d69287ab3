"""The models declared in the configuration, by name, loaded on demand by the pipelines."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.inference.files import resolve_path
from gateway.inference.model import Model, ModelInfo
from gateway.inference.spec import ModelSpec

logger = logging.getLogger(__name__)


class UnknownModelError(LookupError):
    """No model is declared under the requested name."""


class ModelRegistry:
    """Declared models by name; :meth:`get` loads a fresh :class:`Model` for each caller.

    Interpreters are not thread-safe, so each pipeline worker gets its own instance (and its own
    latency statistics) instead of sharing one behind a lock. Paths are relative to ``base_dir``,
    the directory of the configuration file.
    """

    def __init__(self, specs: Mapping[str, ModelSpec], base_dir: Path) -> None:
        self._specs = dict(specs)
        self.base_dir = Path(base_dir)
        self._issued: weakref.WeakSet[Model] = weakref.WeakSet()
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Names of the declared models, sorted."""
        return sorted(self._specs)

    def spec(self, name: str) -> ModelSpec:
        """The declaration of model ``name``."""
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise UnknownModelError(f"unknown model {name!r} (declared: {known})") from None

    def path(self, name: str) -> Path:
        """Where the file of model ``name`` is on disk."""
        return resolve_path(self.spec(name).path, self.base_dir)

    def get(self, name: str) -> Model:
        """Load model ``name`` (verified and warmed up); the caller owns it and closes it."""
        model = Model(name, self.spec(name), self.base_dir)
        with self._lock:
            self._issued.add(model)
        return model

    def describe(self) -> dict[str, Any]:
        """Status of every declared model, for the gateway's info and metrics messages.

        For the models in use: what runs (version, runtime, active delegate and the delegates that
        fell back), how many instances, and latency percentiles and call counts summed over them.
        """
        with self._lock:
            issued = [m for m in self._issued if not m.closed]
        doc: dict[str, Any] = {}
        for name in self.names():
            models = [m for m in issued if m.name == name]
            if not models:
                doc[name] = {"loaded": False}
                continue
            info = models[0].info
            stats = [m.stats() for m in models]
            doc[name] = {
                "loaded": True,
                "version": info.version,
                "sha256": info.sha256[:16],
                "runtime": info.runtime,
                "delegate": info.delegate,
                "fallbacks": {a.delegate: a.reason for a in info.fallbacks},
                "instances": len(models),
                "calls": sum(s.count for s in stats),
                "p50_ms": round(max(s.p50_ms for s in stats), 3),
                "p95_ms": round(max(s.p95_ms for s in stats), 3),
                "reloads": sum(s.reloads for s in stats),
                "reload_failures": sum(s.reload_failures for s in stats),
            }
        return doc

    def verify(self, name: str) -> ModelInfo:
        """Load model ``name`` once to prove it is intact and runs; returns what it ran on."""
        with self.get(name) as model:
            return model.info

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)
