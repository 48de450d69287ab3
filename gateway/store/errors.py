"""Errors of the store, typed so the core can report them on the errors topic."""

from __future__ import annotations

from pathlib import Path


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailableError(StoreError):
    """The database cannot be opened or written (disk full, read-only file or directory, I/O error).

    ``reason`` is a short machine-readable word (``disk_full``, ``read_only``, ``io_error``, ``cannot_open``,
    ``corrupt``); ``detail`` is SQLite's or the OS's message.
    """

    def __init__(self, path: Path | None, reason: str, detail: str) -> None:
        self.path = path
        self.reason = reason
        self.detail = detail
        where = f" ({path})" if path is not None else ""
        super().__init__(f"store unavailable{where}: {reason}: {detail}")


def classify_sqlite_error(exc: BaseException) -> str:
    """The ``reason`` word for an exception raised by sqlite3 or the OS while writing."""
    text = str(exc).lower()
    if "full" in text or "no space" in text:
        return "disk_full"
    if "readonly" in text or "read-only" in text or "permission" in text or "access" in text:
        return "read_only"
    if "unable to open" in text:
        return "cannot_open"
    if "malformed" in text or "not a database" in text:
        return "corrupt"
    return "io_error"
