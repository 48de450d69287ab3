"""Finding model files and proving they are the ones intended.

A model's expected SHA-256 comes from, in order: the ``sha256`` pinned in its :class:`ModelSpec`,
the ``manifest.json`` written by the model toolchain beside the file, or a ``<file>.sha256`` sidecar
(``sha256sum`` format). The file is read once, hashed, and the interpreter is built from those very
bytes, so what was verified is what runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PKG_SCHEME = "pkg://"
MANIFEST_NAME = "manifest.json"


class ModelIntegrityError(ValueError):
    """A model file does not match its expected SHA-256; it is refused."""


class ModelFileError(FileNotFoundError):
    """A model file (or its labels) cannot be found where the configuration says."""


def resolve_path(path: str, base_dir: Path) -> Path:
    """Resolve a configured path: ``pkg://<package>/<relative>`` or relative to ``base_dir``."""
    if path.startswith(PKG_SCHEME):
        package, _, relative = path[len(PKG_SCHEME) :].partition("/")
        if not package or not relative:
            raise ModelFileError(f"{path!r}: expected pkg://<package>/<relative path>")
        try:
            root = resources.files(package)
        except ModuleNotFoundError as exc:
            raise ModelFileError(f"{path!r}: package {package!r} is not installed") from exc
        resolved = Path(str(root.joinpath(relative)))
    else:
        resolved = Path(path).expanduser()
        if not resolved.is_absolute():
            resolved = base_dir / resolved
    return resolved


def sha256_bytes(content: bytes) -> str:
    """Hex SHA-256 of ``content``."""
    return hashlib.sha256(content).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``."""
    return sha256_bytes(path.read_bytes())


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """What a manifest says about one model file."""

    sha256: str
    version: str | None
    model: str | None


def manifest_entry(path: Path) -> ManifestEntry | None:
    """The entry for ``path`` in the ``manifest.json`` beside it, or its ``.sha256`` sidecar."""
    manifest = path.parent / MANIFEST_NAME
    if manifest.is_file():
        try:
            data: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable manifest %s: %s", manifest, exc)
        else:
            for model_name, model in data.get("models", {}).items():
                for variant in model.get("variants", {}).values():
                    if variant.get("file") == path.name and variant.get("sha256"):
                        return ManifestEntry(
                            sha256=str(variant["sha256"]).lower(),
                            version=model.get("version"),
                            model=model_name,
                        )
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        token = sidecar.read_text(encoding="utf-8").split()
        if token:
            return ManifestEntry(sha256=token[0].lower(), version=None, model=None)
    return None


def read_verified(path: Path, expected_sha256: str | None, *, what: str) -> tuple[bytes, str]:
    """Read ``path`` and check it against ``expected_sha256``; return the bytes and their digest.

    Raises :class:`ModelFileError` when absent and :class:`ModelIntegrityError` on a mismatch.
    """
    try:
        content = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelFileError(f"{what}: model file not found: {path}") from exc
    digest = sha256_bytes(content)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelIntegrityError(
            f"{what}: SHA-256 mismatch for {path}: expected {expected_sha256}, file has {digest}; "
            "refusing to load it (update the sha256 in the config or the manifest if the change is intended)"
        )
    return content, digest


def file_signature(*paths: Path) -> tuple[tuple[int, int, int], ...]:
    """A cheap fingerprint (mtime, size, inode) of files, to notice that one changed on disk."""
    sig: list[tuple[int, int, int]] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            sig.append((-1, -1, -1))
        else:
            sig.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(sig)


def read_labels(labels: list[str] | str | None, base_dir: Path) -> list[str] | None:
    """Labels given inline, or read one per line from a text file (blank lines kept as index holes)."""
    if labels is None or isinstance(labels, list):
        return labels
    path = resolve_path(labels, base_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ModelFileError(f"labels file not found: {path}") from exc
    return [line.strip() for line in text.splitlines()]
