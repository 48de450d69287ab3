"""The SQLite backend of the outbox (sqlite-utils over the standard sqlite3 module).

WAL journal and ``synchronous=NORMAL``: a commit survives a crash of the process; on a power cut the
last commits may be lost, never the file's consistency. Only the outbox's writer thread writes; readers
(the deliverers, ``stats``) use their own connections, which WAL lets run beside the writer.

Schema changes are sqlite-utils migrations applied at start-up; ``PRAGMA user_version`` mirrors the
number of the last one applied, so the schema version is visible with any SQLite tool.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from gateway.store.records import Backend, Batch, Outcome, Selection, StoredRow, Victim

log = logging.getLogger(__name__)

MIGRATIONS = Migrations("edge_gateway.outbox")
_CHUNK = 500  # ids per IN (...) list
_INSERT_COLUMNS = (
    "id",
    "kind",
    "pipeline",
    "topic",
    "payload",
    "qos",
    "retain",
    "created_at",
    "targets",
    "pending",
    "size",
)
_COLUMNS = "id, kind, pipeline, topic, payload, qos, retain, created_at, targets, pending"


@MIGRATIONS(name="0001_records")
def _m0001_records(db: Database) -> None:
    # Clustered on the id: records are appended in id order into one B-tree (no separate rowid tree and
    # id index), and reading the oldest pending ones is a range scan. Payloads are small JSON documents.
    db.execute(
        """
        CREATE TABLE records (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL,
            qos INTEGER NOT NULL,
            retain INTEGER NOT NULL,
            created_at REAL NOT NULL,
            size INTEGER NOT NULL,
            targets INTEGER NOT NULL,
            pending INTEGER NOT NULL
        ) WITHOUT ROWID
        """
    )
    # the delivery state of a destination is one bit of `pending`; how far it was sent, one id
    db.execute(
        "CREATE TABLE destinations (name TEXT PRIMARY KEY, bit INTEGER NOT NULL UNIQUE, "
        "sent_through TEXT NOT NULL DEFAULT '')"
    )
    db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")


SCHEMA_VERSION = 1  # the number of migrations above


def _where(selection: Selection) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if selection.kind is not None:
        clauses.append("kind = ?")
        params.append(selection.kind)
    if selection.pipeline is not None:
        clauses.append("pipeline = ?")
        params.append(selection.pipeline)
    if selection.since is not None:
        clauses.append("created_at >= ?")
        params.append(selection.since)
    if selection.until is not None:
        clauses.append("created_at < ?")
        params.append(selection.until)
    return (" AND ".join(clauses) or "1"), params


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


_row = StoredRow._make


class SqliteBackend(Backend):
    """Outbox storage in one SQLite file."""

    def __init__(self, path: Path, *, max_file_bytes: int | None = None, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.max_file_bytes = max_file_bytes
        self.busy_timeout_ms = busy_timeout_ms
        self._db: Database | None = None
        self._names: dict[int, str] = {}
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    # -- connections

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, timeout=self.busy_timeout_ms / 1000)
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=self.busy_timeout_ms / 1000)
        db = Database(conn)
        self._db = db
        db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        if db.journal_mode != "wal":
            db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")
        MIGRATIONS.apply(db)
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version != SCHEMA_VERSION:
            with db.ensure_autocommit_on():
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if self.max_file_bytes is not None:
            self.set_max_file_bytes(self.max_file_bytes)

    def set_max_file_bytes(self, max_file_bytes: int | None) -> None:
        """Limit the database file's size (``None``: as large as the disk allows)."""
        page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
        pages = 2**32 - 2 if max_file_bytes is None else max(1, max_file_bytes // page_size)
        self.db.execute(f"PRAGMA max_page_count = {pages}")
        self.max_file_bytes = max_file_bytes

    def register_destinations(self, names: Sequence[str]) -> dict[str, int]:
        db = self.db
        known = {str(n): int(b) for n, b in db.execute("SELECT name, bit FROM destinations").fetchall()}
        with db.atomic():
            for name in names:
                if name in known:
                    continue
                used = set(known.values())
                bit = next(1 << i for i in range(62) if (1 << i) not in used)
                db.execute("INSERT INTO destinations (name, bit) VALUES (?, ?)", [name, bit])
                # a partial index per destination keeps "what is still to send there" cheap to find
                db.execute(
                    f"CREATE INDEX IF NOT EXISTS records_pending_{bit.bit_length() - 1} ON records (id) WHERE (pending & {bit}) != 0"
                )
                known[name] = bit
        self._names = {b: n for n, b in known.items()}
        return {n: known[n] for n in names}

    def totals(self) -> dict[str, tuple[int, int]]:
        rows = self.db.execute("SELECT kind, count(*), coalesce(sum(size), 0) FROM records GROUP BY kind").fetchall()
        return {str(k): (int(n), int(b)) for k, n, b in rows}

    def sent_through(self) -> dict[int, str]:
        return {int(b): str(s) for b, s in self.db.execute("SELECT bit, sent_through FROM destinations").fetchall()}

    def load_counters(self) -> dict[str, int]:
        return {str(n): int(v) for n, v in self.db.execute("SELECT name, value FROM counters").fetchall()}

    def oldest(self, kind: str) -> Iterator[Victim]:
        after = ""
        while True:
            rows = self.db.execute(
                "SELECT id, size, pending FROM records WHERE kind = ? AND id > ? ORDER BY id LIMIT 256", [kind, after]
            ).fetchall()
            if not rows:
                return
            for rid, size, pending in rows:
                yield Victim(str(rid), int(size), int(pending))
            after = str(rows[-1][0])

    # -- the writer's transaction

    def commit(self, batch: Batch, now: float) -> Outcome:
        db = self.db
        conn = db.conn
        out = Outcome()
        with db.atomic():
            if batch.inserts:
                before = conn.total_changes
                # list mode: a header of column names, then one tuple per row (no dict per row)
                db.table("records").insert_all(
                    [_INSERT_COLUMNS, *(r + (len(r.payload),) for r in batch.inserts)],
                    ignore=True,
                    batch_size=max(1, min(len(batch.inserts), 900)),
                )
                inserted = conn.total_changes - before
                if inserted != len(batch.inserts):
                    log.warning("%d records had an id already stored and were ignored", len(batch.inserts) - inserted)
            for ids in _chunks(batch.evict):
                conn.execute(f"DELETE FROM records WHERE id IN ({','.join('?' * len(ids))})", list(ids))
            for bit, all_ids in batch.delivered:
                name = self._names.get(bit, str(bit))
                for ids in _chunks(all_ids):
                    cur = conn.execute(
                        f"UPDATE records SET pending = pending & ~{bit} WHERE (pending & {bit}) != 0 "
                        f"AND id IN ({','.join('?' * len(ids))})",
                        list(ids),
                    )
                    out.count(f"delivered:{name}", cur.rowcount)
            for bit, last in batch.sent_through.items():
                conn.execute(
                    "UPDATE destinations SET sent_through = ? WHERE bit = ? AND sent_through < ?", [last, bit, last]
                )
            for bit, selection in batch.replay:
                where, params = _where(selection)
                cur = conn.execute(
                    f"UPDATE records SET pending = pending | {bit} WHERE (targets & {bit}) != 0 AND (pending & {bit}) = 0 "
                    f"AND {where}",
                    params,
                )
                out.count("replayed", cur.rowcount)
            for selection, undelivered_too in batch.purge:
                where, params = _where(selection)
                if not undelivered_too:
                    where += " AND pending = 0"
                self._remove(where, params, "purged", out)
            for kind, cutoff in batch.expire:
                self._remove_old(kind, cutoff, True, "expired", out)
            if batch.prune_before is not None:
                self._remove_old(None, batch.prune_before, False, "pruned", out)
            counters = dict(batch.counters)
            for name, n in out.counters.items():
                counters[name] = counters.get(name, 0) + n
            counters = {k: v for k, v in counters.items() if v}
            if counters:
                conn.executemany(
                    "INSERT INTO counters (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                    list(counters.items()),
                )
        return out

    def _remove(self, where: str, params: list[Any], undelivered_counter: str, out: Outcome) -> None:
        conn = self.db.conn
        rows = conn.execute(
            f"SELECT kind, count(*), coalesce(sum(size), 0), sum(pending != 0) FROM records WHERE {where} GROUP BY kind",
            params,
        ).fetchall()
        if not rows:
            return
        conn.execute(f"DELETE FROM records WHERE {where}", params)
        for kind, n, size, undelivered in rows:
            out.remove(str(kind), int(n), int(size))
            out.count(undelivered_counter, int(undelivered))
            out.count("pruned", int(n) - int(undelivered))

    def _remove_old(
        self, kind: str | None, cutoff: float, undelivered_too: bool, undelivered_counter: str, out: Outcome
    ) -> None:
        """Remove records created before ``cutoff`` (delivered ones only unless ``undelivered_too``).

        Scans from the oldest id and stops at the first younger record (ids follow creation time), so a
        maintenance pass costs what it removes, not the size of the store.
        """
        conn = self.db.conn
        where = "id > ? AND kind = ?" if kind is not None else "id > ?"
        after = ""
        gone: list[tuple[str, str, int, int]] = []
        young = False
        while not young:
            params: list[Any] = [after, kind] if kind is not None else [after]
            rows = conn.execute(
                f"SELECT id, kind, size, pending, created_at FROM records WHERE {where} ORDER BY id LIMIT 500", params
            ).fetchall()
            if not rows:
                break
            for rid, k, size, pending, created_at in rows:
                if created_at >= cutoff:
                    young = True
                    break
                if undelivered_too or not pending:
                    gone.append((str(rid), str(k), int(size), int(pending)))
            after = str(rows[-1][0])
        for i in range(0, len(gone), _CHUNK):
            ids = [g[0] for g in gone[i : i + _CHUNK]]
            conn.execute(f"DELETE FROM records WHERE id IN ({','.join('?' * len(ids))})", ids)
        for _, k, size, pending in gone:
            out.remove(k, 1, size)
            out.count(undelivered_counter if pending else "pruned", 1)

    # -- reads

    def pending(self, bit: int, limit: int, after: str | None = None) -> list[StoredRow]:
        rows = (
            self._reader()
            .execute(
                f"SELECT {_COLUMNS} FROM records WHERE (pending & {int(bit)}) != 0 AND id > ? ORDER BY id LIMIT ?",
                [after or "", limit],
            )
            .fetchall()
        )
        return list(map(_row, rows))

    def pending_summary(self, bit: int) -> tuple[int, float | None]:
        conn = self._reader()
        bit = int(bit)
        count = int(conn.execute(f"SELECT count(*) FROM records WHERE (pending & {bit}) != 0").fetchone()[0])
        first = conn.execute(
            f"SELECT created_at FROM records WHERE (pending & {bit}) != 0 ORDER BY id LIMIT 1"
        ).fetchone()
        return count, None if first is None else float(first[0])

    def select(self, selection: Selection, limit: int) -> list[StoredRow]:
        where, params = _where(selection)
        rows = (
            self._reader()
            .execute(f"SELECT {_COLUMNS} FROM records WHERE {where} ORDER BY id LIMIT ?", [*params, limit])
            .fetchall()
        )
        return list(map(_row, rows))

    def integrity(self) -> str:
        rows = self._reader().execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(r[0]) for r in rows)

    def file_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            p = self.path.with_name(self.path.name + suffix)
            if p.exists():
                total += p.stat().st_size
        return total

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        if self._db is not None:
            self._db.close()
            self._db = None
