"""A small persistent key -> JSON store for what plugins learn (baselines, per-series state).

One SQLite file per gateway (``<data_dir>/state.db``), one namespace per pipeline, so a restart does not
throw away what was learned. Writes are small and rare (plugins persist periodically and at close).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class StateStore:
    """Key -> JSON value store for one namespace (a pipeline), backed by SQLite."""

    def __init__(self, path: Path, namespace: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS state (ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
            "PRIMARY KEY (ns, key))"
        )
        self._ns = namespace
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        """The stored value of ``key``, or ``default``."""
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE ns=? AND key=?", (self._ns, key)).fetchone()
        return default if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (JSON-serialisable) under ``key``."""
        text = json.dumps(value, separators=(",", ":"))
        with self._lock:
            self._db.execute(
                "INSERT INTO state (ns, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT(ns, key) DO UPDATE SET value=excluded.value",
                (self._ns, key, text),
            )

    def put_many(self, items: dict[str, Any]) -> None:
        """Store several keys in one transaction."""
        rows = [(self._ns, k, json.dumps(v, separators=(",", ":"))) for k, v in items.items()]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO state (ns, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT(ns, key) DO UPDATE SET value=excluded.value",
                rows,
            )
            self._db.execute("COMMIT")

    def delete(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            self._db.execute("DELETE FROM state WHERE ns=? AND key=?", (self._ns, key))

    def items(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        """All (key, value) pairs whose key starts with ``prefix``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM state WHERE ns=? AND key >= ? AND key < ? ORDER BY key",
                (self._ns, prefix, prefix + "\U0010ffff"),
            ).fetchall()
        for key, value in rows:
            yield key, json.loads(value)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
