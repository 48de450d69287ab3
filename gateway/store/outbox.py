"""The outbox: results are stored here first, then handed out for delivery, oldest first, per destination.

Durability contract. :meth:`Outbox.put` queues the record for the single writer thread and returns at
once; the writer commits queued writes in batches (``batch_size``, ``flush_interval_s``). A record is
handed out by :meth:`Outbox.pending` only once it is committed, so nothing is published before it is
stored. :meth:`Outbox.flush` is the durability barrier: it returns when everything queued before the call
is committed, and raises :class:`StoreUnavailableError` while the database cannot be written. A process
crash loses at most the writes queued and not yet committed — none of which were published.

Delivery state. Each record is pending for a set of destinations (``local``, ``cloud``, ...). A deliverer
takes :meth:`~Outbox.pending` records, calls :meth:`~Outbox.mark_in_flight`, publishes them, calls
:meth:`~Outbox.mark_sent` with the last one the link accepted, and :meth:`~Outbox.mark_delivered` as
acknowledgements arrive (or :meth:`~Outbox.requeue`). Being in flight is kept in memory only: after a
restart everything unacknowledged is pending again and is sent again, so delivery is at-least-once. How
far each destination was sent is persisted (one id per destination), so a record sent again to where it
was already sent is counted in ``duplicates``. Acknowledgements are persisted by the writer.

Caps. Per kind of record: rows, payload bytes and age. Delivered records kept for replay are removed
first (``pruned``); then ``drop_oldest`` removes the oldest undelivered records of the kind (``dropped``)
while ``reject_new`` refuses the new one (``rejected``). Records older than ``max_age_s`` are removed by
the maintenance pass (undelivered ones counted as ``expired``). Every stored record leaves the store in
exactly one counter, so ``stored == rows + dropped + expired + purged + pruned`` at all times.

Degradation. When a write fails (disk full, read-only file, I/O error) the writer keeps the writes in
memory, reports a :class:`StoreUnavailableError` to the health listeners, and retries with a backoff.
Intake goes on into that in-memory spill, bounded by ``spill_max_records``; beyond it new records are
refused and counted in ``spill_overflow``. Spilled records are published only once they are written.
When the write succeeds again, the listeners are told (``None``) and delivery resumes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

from gateway.ids import new_id
from gateway.store.config import StoreConfig
from gateway.store.errors import StoreUnavailableError, classify_sqlite_error
from gateway.store.records import Backend, Batch, OutboxRecord, Selection, StoredRow, Victim

log = logging.getLogger(__name__)

DEFAULT_DESTINATIONS = ("local", "cloud")
COUNTERS = (
    "stored",
    "rejected",
    "dropped",
    "expired",
    "purged",
    "pruned",
    "duplicates",
    "replayed",
    "spill_overflow",
)

HealthListener = Callable[[StoreUnavailableError | None], None]


@dataclass(frozen=True, slots=True)
class DestinationStats:
    """Delivery backlog of one destination."""

    pending: int
    in_flight: int
    oldest_unsent_age_s: float | None
    delivered: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """A snapshot of the outbox for the metrics message and ``edge-gateway outbox status``."""

    rows: int
    bytes: int
    by_kind: dict[str, tuple[int, int]]
    counters: dict[str, int]
    destinations: dict[str, DestinationStats]
    queued_writes: int
    healthy: bool
    error: str | None
    file_bytes: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rows": self.rows,
            "bytes": self.bytes,
            "by_kind": {k: {"rows": r, "bytes": b} for k, (r, b) in sorted(self.by_kind.items())},
            "counters": dict(self.counters),
            "destinations": {
                name: {
                    "pending": d.pending,
                    "in_flight": d.in_flight,
                    "oldest_unsent_age_s": None if d.oldest_unsent_age_s is None else round(d.oldest_unsent_age_s, 3),
                    "delivered": d.delivered,
                }
                for name, d in self.destinations.items()
            },
            "queued_writes": self.queued_writes,
            "healthy": self.healthy,
            "error": self.error,
            "file_bytes": self.file_bytes,
        }


# A queued write is a tuple: ("insert", row) | ("delivered", bit, ids) | ("sent", bit, last_id)
# | ("replay", bit, selection) | ("purge", selection, undelivered_too)
_Op = tuple[Any, ...]


class Outbox:
    """Stores results and hands them out for delivery; see the module docstring for the guarantees.

    Thread-safe: ``put`` from any pipeline thread, ``pending``/``mark_*`` from the deliverers, acks from
    a network thread. One writer thread owns all writes.
    """

    def __init__(
        self,
        backend: Backend,
        config: StoreConfig | None = None,
        destinations: Sequence[str] = DEFAULT_DESTINATIONS,
        *,
        clock: Callable[[], float] = time.time,
        path: Path | None = None,
    ) -> None:
        self.config = config or StoreConfig()
        self.backend = backend
        self.path = path
        self._clock = clock
        try:
            backend.open()
            self._bits = backend.register_destinations(list(destinations))
            self._totals = {k: list(v) for k, v in backend.totals().items()}
            persisted = backend.load_counters()
            self._sent_through = backend.sent_through()
        except (sqlite3.Error, OSError) as e:
            raise StoreUnavailableError(path, classify_sqlite_error(e), str(e)) from e
        self._names = {bit: name for name, bit in self._bits.items()}
        self._counters: dict[str, int] = {name: 0 for name in COUNTERS}
        self._counters.update(persisted)
        self._unpersisted: dict[str, int] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ops: deque[_Op] = deque()
        self._seq = 0
        self._committed_seq = 0
        self._in_flight: dict[int, set[str]] = {bit: set() for bit in self._names}
        self._unacked_writes: dict[int, set[str]] = {bit: set() for bit in self._names}
        self._rewinds: dict[int, int] = {bit: 0 for bit in self._names}
        self._masks: dict[tuple[str, ...], int] = {}
        self._spill_max = self.config.spill_max_records
        self._batch_size = self.config.batch_size
        self._max_id = ""
        self._mask_names: dict[int, frozenset[str]] = {}
        self._error: StoreUnavailableError | None = None
        self._health_listeners: list[HealthListener] = []
        self._commit_listeners: list[Callable[[], None]] = []
        self._flush_requested = False
        self._closing = False
        self._next_maintenance = 0.0
        self._writer = threading.Thread(target=self._run, name="outbox-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ construction

    @classmethod
    def open(
        cls,
        config: StoreConfig,
        destinations: Sequence[str] = DEFAULT_DESTINATIONS,
        *,
        data_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Outbox:
        """The outbox described by ``config`` (a relative ``path`` is taken relative to ``data_dir``).

        Raises :class:`StoreUnavailableError` when the database cannot be opened or migrated.
        """
        if config.backend == "memory":
            from gateway.store.memory import MemoryBackend

            return cls(MemoryBackend(), config, destinations, clock=clock)
        from gateway.store.sqlite import SqliteBackend

        path = config.path if data_dir is None or config.path.is_absolute() else data_dir / config.path
        return cls(
            SqliteBackend(path, max_file_bytes=config.max_file_bytes), config, destinations, clock=clock, path=path
        )

    @property
    def destinations(self) -> list[str]:
        """The registered destinations."""
        return list(self._bits)

    # ------------------------------------------------------------------ intake

    def put(
        self,
        kind: str,
        pipeline: str,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        destinations: Iterable[str] | None = None,
        record_id: str | None = None,
        created_at: float | None = None,
    ) -> str | None:
        """Queue a record for the writer and return its id (see the module docstring on durability).

        ``destinations`` defaults to ``("local",)``. Returns ``None`` when the record was refused because
        the store is unavailable and the in-memory spill is full (counted in ``spill_overflow``). Blocks
        while the writer is behind by ``spill_max_records`` writes and the store is healthy (backpressure).
        """
        key = ("local",) if destinations is None else tuple(destinations)
        mask = self._masks.get(key)
        if mask is None:
            mask = self._mask_of(key)
        row = StoredRow(
            record_id or new_id(),
            kind,
            pipeline,
            topic,
            payload if type(payload) is bytes else bytes(payload),
            qos,
            retain,
            self._clock() if created_at is None else created_at,
            mask,
            mask,
        )
        ops = self._ops
        with self._lock:  # the hot path: the condition's lock, notified only when the writer may wait
            if len(ops) >= self._spill_max:
                return self._put_when_full(row)
            self._seq += 1
            ops.append(("insert", row))
            if len(ops) == 1 or len(ops) == self._batch_size:
                self._cond.notify_all()
        return row.id

    def _mask_of(self, destinations: tuple[str, ...]) -> int:
        mask = 0
        for name in destinations:
            try:
                mask |= self._bits[name]
            except KeyError:
                raise ValueError(f"unknown destination {name!r} (known: {', '.join(self._bits)})") from None
        if not mask:
            raise ValueError("a record needs at least one destination")
        self._masks[destinations] = mask
        return mask

    def _put_when_full(self, row: StoredRow) -> str | None:
        # called with the lock held: wait for the writer while it is healthy, refuse while it is not
        while len(self._ops) >= self._spill_max:
            if self._error is not None or self._closing:
                self._count_locked("spill_overflow", 1)
                return None
            self._cond.wait(0.5)
        self._enqueue_locked(("insert", row))
        return row.id

    def flush(self, timeout: float | None = 10.0) -> None:
        """Return once every write queued before the call is committed.

        Raises :class:`StoreUnavailableError` while the database cannot be written, ``TimeoutError`` if the
        writer did not finish within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._seq
            self._flush_requested = True
            self._cond.notify_all()
            while self._committed_seq < target:
                if self._error is not None:
                    raise self._error
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"outbox writer did not commit within {timeout} s")
                self._cond.wait(remaining if remaining is None else min(remaining, 0.5))

    # ------------------------------------------------------------------ delivery

    def pending(self, destination: str, limit: int = 100, after: str | None = None) -> list[OutboxRecord]:
        """Up to ``limit`` committed records still to be delivered to ``destination``, oldest first,
        excluding those in flight.

        ``after`` continues from the last id a caller handed out; it is only valid while
        :meth:`rewinds` for the destination is unchanged (a requeue, a replay or a record committed
        behind others changes it).
        """
        bit = self._bit(destination)
        with self._lock:
            skip = self._in_flight[bit] | self._unacked_writes[bit]
        # without a cursor the records to skip are among the oldest: fetch enough to get past them
        rows = self.backend.pending(bit, limit if after is not None else limit + len(skip), after)
        out: list[OutboxRecord] = []
        for row in rows:
            if row.id in skip:
                continue
            out.append(self._record(row))
            if len(out) >= limit:
                break
        return out

    def rewinds(self, destination: str) -> int:
        """Changes whenever records may have become pending behind the ones already handed out."""
        with self._lock:
            return self._rewinds[self._bit(destination)]

    def mark_in_flight(self, destination: str, records: Iterable[OutboxRecord]) -> None:
        """Records about to be handed to the link for ``destination`` (call before publishing them).

        One already sent there before (see :meth:`mark_sent`) is counted as a possible duplicate.
        """
        bit = self._bit(destination)
        with self._lock:
            flight = self._in_flight[bit]
            through = self._sent_through.get(bit, "")
            again = 0
            for rec in records:
                flight.add(rec.id)
                if rec.id <= through:
                    again += 1
            if again:
                self._count_locked("duplicates", again)

    def mark_sent(self, destination: str, last_id: str) -> None:
        """The link accepted every record up to ``last_id`` (persisted: after a restart, records up to it
        that are still pending count as possible duplicates when sent again)."""
        bit = self._bit(destination)
        with self._cond:
            if last_id > self._sent_through.get(bit, ""):
                self._sent_through[bit] = last_id
                self._enqueue_locked(("sent", bit, last_id))

    def mark_delivered(self, destination: str, ids: Iterable[str]) -> None:
        """The link acknowledged these records; persisted by the writer (safe to call from any thread)."""
        bit = self._bit(destination)
        ids = list(ids)
        if not ids:
            return
        with self._cond:
            self._in_flight[bit].difference_update(ids)
            self._unacked_writes[bit].update(ids)
            self._enqueue_locked(("delivered", bit, ids))

    def requeue(self, destination: str, ids: Iterable[str] | None = None) -> int:
        """Make in-flight records pending again (all of them when ``ids`` is None); returns how many."""
        bit = self._bit(destination)
        with self._lock:
            flight = self._in_flight[bit]
            before = len(flight)
            if ids is None:
                flight.clear()
            else:
                flight.difference_update(ids)
            n = before - len(flight)
            if n:
                self._rewinds[bit] += 1
            return n

    def in_flight(self, destination: str) -> int:
        """Records of ``destination`` sent and not yet acknowledged."""
        with self._lock:
            return len(self._in_flight[self._bit(destination)])

    # ------------------------------------------------------------------ operations

    def replay(self, destination: str, selection: Selection | None = None) -> None:
        """Make stored records already delivered to ``destination`` pending for it again (queued write)."""
        bit = self._bit(destination)
        with self._cond:
            self._enqueue_locked(("replay", bit, selection or Selection()))
            self._rewinds[bit] += 1

    def purge(self, selection: Selection | None = None, *, undelivered_too: bool = False) -> None:
        """Remove stored records matching ``selection`` (queued write). Undelivered ones only with
        ``undelivered_too`` (counted as ``purged``); delivered ones are counted as ``pruned``."""
        with self._cond:
            self._enqueue_locked(("purge", selection or Selection(), undelivered_too))

    def records(self, selection: Selection | None = None, limit: int = 100) -> list[OutboxRecord]:
        """Committed records matching ``selection``, oldest first (for inspection)."""
        return [self._record(row) for row in self.backend.select(selection or Selection(), limit)]

    def integrity(self) -> str:
        """The database's own consistency check (``ok`` when sound)."""
        return self.backend.integrity()

    def stats(self) -> OutboxStats:
        """Counters, sizes and per-destination backlog."""
        now = self._clock()
        dests: dict[str, DestinationStats] = {}
        for name, bit in self._bits.items():
            try:
                count, oldest = self.backend.pending_summary(bit)
            except (sqlite3.Error, OSError):
                count, oldest = -1, None
            with self._lock:
                flight = len(self._in_flight[bit])
                delivered = self._counters.get(f"delivered:{name}", 0)
            dests[name] = DestinationStats(count, flight, None if oldest is None else max(0.0, now - oldest), delivered)
        with self._lock:
            by_kind = {k: (v[0], v[1]) for k, v in self._totals.items() if v[0] or v[1]}
            counters = {k: v for k, v in self._counters.items() if ":" not in k}
            queued = len(self._ops)
            error = self._error
        try:
            file_bytes = self.backend.file_bytes()
        except OSError:
            file_bytes = 0
        return OutboxStats(
            rows=sum(r for r, _ in by_kind.values()),
            bytes=sum(b for _, b in by_kind.values()),
            by_kind=by_kind,
            counters=counters,
            destinations=dests,
            queued_writes=queued,
            healthy=error is None,
            error=None if error is None else str(error),
            file_bytes=file_bytes,
        )

    @property
    def error(self) -> StoreUnavailableError | None:
        """The current write failure, or ``None`` while the store is healthy."""
        return self._error

    def add_health_listener(self, listener: HealthListener) -> None:
        """Called (from the writer thread) with the error when writes start failing and ``None`` on recovery."""
        self._health_listeners.append(listener)

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Called (from the writer thread) after a commit that made records pending (wakes deliverers)."""
        self._commit_listeners.append(listener)

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued (within ``timeout``) and close the database."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._writer.join(timeout)
        if self._writer.is_alive():
            log.error("outbox writer did not stop within %.1f s; %d writes not committed", timeout, len(self._ops))
            return
        self.backend.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _bit(self, destination: str) -> int:
        try:
            return self._bits[destination]
        except KeyError:
            raise ValueError(f"unknown destination {destination!r} (known: {', '.join(self._bits)})") from None

    def _destinations_of(self, mask: int) -> frozenset[str]:
        names = self._mask_names.get(mask)
        if names is None:
            names = self._mask_names[mask] = frozenset(n for b, n in self._names.items() if mask & b)
        return names

    def _record(self, row: StoredRow) -> OutboxRecord:
        sent = 0
        for bit, through in self._sent_through.items():
            if row.id <= through and row.targets & bit:
                sent |= bit
        names = self._mask_names
        pending_to = names.get(row.pending) or self._destinations_of(row.pending)
        sent_to = names.get(sent) or self._destinations_of(sent)
        return OutboxRecord(
            row.id,
            row.kind,
            row.pipeline,
            row.topic,
            row.payload,
            row.qos,
            bool(row.retain),
            row.created_at,
            pending_to,
            sent_to,
        )

    def _enqueue_locked(self, op: _Op) -> None:
        self._seq += 1
        self._ops.append(op)
        if len(self._ops) == 1 or len(self._ops) >= self.config.batch_size:
            self._cond.notify_all()

    def _count_locked(self, name: str, n: int) -> None:
        self._counters[name] = self._counters.get(name, 0) + n
        self._unpersisted[name] = self._unpersisted.get(name, 0) + n

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        backoff = self.config.retry_interval_s
        while True:
            with self._cond:
                ops = self._take_locked()
                closing = self._closing
            maintenance = self._clock() >= self._next_maintenance
            if not ops and not maintenance and not self._unpersisted:
                if closing:
                    return
                continue
            try:
                self._write(ops, maintenance)
            except (sqlite3.Error, OSError) as e:
                self._failed(ops, e)
                if closing:
                    with self._lock:
                        lost = sum(1 for op in self._ops if op[0] == "insert")
                    log.error("closing with the store unavailable: %d records not written", lost)
                    return
                with self._cond:
                    self._cond.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = self.config.retry_interval_s
            if closing:
                with self._lock:
                    if not self._ops:
                        return

    def _take_locked(self) -> list[_Op]:
        """Wait for work, then take up to ``batch_size`` writes (in order)."""
        cfg = self.config
        while not self._ops and not self._closing:
            wait = self._next_maintenance - self._clock()
            if wait <= 0:
                return []
            self._cond.wait(min(wait, 1.0))
        if self._ops and cfg.flush_interval_s > 0 and not self._closing and not self._flush_requested:
            deadline = time.monotonic() + cfg.flush_interval_s
            while len(self._ops) < cfg.batch_size and not self._closing and not self._flush_requested:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        self._flush_requested = False
        if len(self._ops) <= cfg.batch_size:
            ops = list(self._ops)
            self._ops.clear()
            return ops
        ops = []
        inserts = 0
        while self._ops and inserts < cfg.batch_size and len(ops) < 4 * cfg.batch_size:
            op = self._ops.popleft()
            ops.append(op)
            inserts += op[0] == "insert"
        return ops

    def _write(self, ops: list[_Op], maintenance: bool) -> None:
        now = self._clock()
        with self._lock:
            unpersisted, self._unpersisted = self._unpersisted, {}
        try:
            batch, totals = self._plan(ops, now)
            planned = dict(batch.counters)
            for name, n in unpersisted.items():
                batch.counters[name] = batch.counters.get(name, 0) + n
            if maintenance:
                self._add_maintenance(batch, totals, now)
            outcome = self.backend.commit(batch, now)
        except BaseException:
            with self._lock:
                for name, n in unpersisted.items():
                    self._unpersisted[name] = self._unpersisted.get(name, 0) + n
            raise
        resync: dict[str, int] | None = None
        for kind, (rows, size) in outcome.removed.items():
            entry = totals.setdefault(kind, [0, 0])
            entry[0] -= rows
            entry[1] -= size
        if maintenance:
            self._next_maintenance = now + self.config.maintenance_interval_s
            # another process (``edge-gateway outbox purge``) may have removed records: re-read the sizes then
            persisted = self.backend.load_counters()
            if persisted.get("purge_ops", 0) != self._counters.get("purge_ops", 0) + planned.get("purge_ops", 0):
                totals = {k: list(v) for k, v in self.backend.totals().items()}
                resync = persisted
        became_pending = bool(batch.inserts) or any(n for k, n in outcome.counters.items() if k == "replayed")
        with self._cond:
            self._totals = totals
            for name, n in planned.items():
                self._counters[name] = self._counters.get(name, 0) + n
            for name, n in outcome.counters.items():
                self._counters[name] = self._counters.get(name, 0) + n
            if resync is not None:
                for name, value in resync.items():
                    self._counters[name] = value + self._unpersisted.get(name, 0)
            for bit, ids in batch.delivered:
                self._unacked_writes[bit].difference_update(ids)
            self._committed_seq += len(ops)
            if batch.inserts:
                if self._max_id and batch.inserts[0].id < self._max_id:
                    # committed behind records already handed out: deliverers must look back
                    for bit in self._rewinds:
                        self._rewinds[bit] += 1
                self._max_id = max(self._max_id, batch.inserts[-1].id)
            recovered = self._error is not None
            self._error = None
            self._cond.notify_all()
        if recovered:
            log.warning("store writable again; %d writes committed", len(ops))
            self._notify_health(None)
        if became_pending:
            for listener in list(self._commit_listeners):
                try:
                    listener()
                except Exception:
                    log.exception("commit listener failed")

    def _failed(self, ops: list[_Op], exc: BaseException) -> None:
        error = StoreUnavailableError(self.path, classify_sqlite_error(exc), str(exc))
        with self._cond:
            self._ops.extendleft(reversed(ops))
            first = self._error is None
            self._error = error
            self._cond.notify_all()
        if first:
            log.error("%s; keeping up to %d writes in memory and retrying", error, self.config.spill_max_records)
            self._notify_health(error)

    def _notify_health(self, error: StoreUnavailableError | None) -> None:
        for listener in list(self._health_listeners):
            try:
                listener(error)
            except Exception:
                log.exception("health listener failed")

    def _plan(self, ops: list[_Op], now: float) -> tuple[Batch, dict[str, list[int]]]:
        """Turn queued writes into one batch, applying each kind's caps and policy to the inserts."""
        batch = Batch()
        totals = {k: list(v) for k, v in self._totals.items()}
        new_by_kind: dict[str, list[StoredRow]] = {}
        delivered: dict[int, list[str]] = {}
        for op in ops:
            what = op[0]
            if what == "insert":
                new_by_kind.setdefault(op[1].kind, []).append(op[1])
            elif what == "delivered":
                delivered.setdefault(op[1], []).extend(op[2])
            elif what == "sent":
                batch.sent_through[op[1]] = max(batch.sent_through.get(op[1], ""), op[2])
            elif what == "replay":
                batch.replay.append((op[1], op[2]))
            elif what == "purge":
                batch.purge.append((op[1], op[2]))
                batch.counters["purge_ops"] = batch.counters.get("purge_ops", 0) + 1
        counts = batch.counters
        for kind, rows in new_by_kind.items():
            accepted = self._apply_caps(kind, rows, totals.setdefault(kind, [0, 0]), batch)
            batch.inserts.extend(accepted)
            counts["stored"] = counts.get("stored", 0) + len(accepted)
        batch.inserts.sort(key=itemgetter(0))  # by id
        batch.delivered = sorted(delivered.items())
        return batch, totals

    def _apply_caps(self, kind: str, rows: list[StoredRow], total: list[int], batch: Batch) -> list[StoredRow]:
        """Accept, evict and reject so that ``kind`` stays within its caps; updates ``total``."""
        limits = self.config.limits_for(kind)
        max_rows, max_bytes = limits.max_rows, limits.max_bytes
        counts = batch.counters

        def over(n: int, size: int) -> bool:
            return (max_rows is not None and n > max_rows) or (max_bytes is not None and size > max_bytes)

        size = sum(len(r.payload) for r in rows)
        if not over(total[0] + len(rows), total[1] + size):
            total[0] += len(rows)
            total[1] += size
            return rows

        stored: Iterator[Victim] = self.backend.oldest(kind)
        stored_done = False
        accepted: list[StoredRow] = []
        removed_new: set[str] = set()
        new_cursor = 0

        def next_victim() -> tuple[Victim, bool] | None:
            nonlocal stored_done, new_cursor
            if not stored_done:
                victim = next(stored, None)
                if victim is not None:
                    return victim, False
                stored_done = True
            while new_cursor < len(accepted):
                r = accepted[new_cursor]
                new_cursor += 1
                if r.id not in removed_new:
                    return Victim(r.id, r.size, r.pending), True
            return None

        peeked: tuple[Victim, bool] | None = None
        for row in rows:
            if max_bytes is not None and row.size > max_bytes:
                counts["rejected"] = counts.get("rejected", 0) + 1
                continue
            while over(total[0] + 1, total[1] + row.size):
                candidate = peeked if peeked is not None else next_victim()
                peeked = None
                if candidate is None:
                    break
                victim, is_new = candidate
                if victim.pending and limits.when_full == "reject_new":
                    peeked = candidate  # cannot remove it; the new record is refused
                    break
                if is_new:
                    removed_new.add(victim.id)
                else:
                    batch.evict.append(victim.id)
                total[0] -= 1
                total[1] -= victim.size
                name = "dropped" if victim.pending else "pruned"
                counts[name] = counts.get(name, 0) + 1
            if over(total[0] + 1, total[1] + row.size):
                counts["rejected"] = counts.get("rejected", 0) + 1
                continue
            accepted.append(row)
            total[0] += 1
            total[1] += row.size
        if removed_new:
            # records stored and removed within the same batch still went through "stored"
            counts["stored"] = counts.get("stored", 0) + len(removed_new)
        return [r for r in accepted if r.id not in removed_new]

    def _add_maintenance(self, batch: Batch, totals: dict[str, list[int]], now: float) -> None:
        for kind in list(totals):
            age = self.config.limits_for(kind).max_age_s
            if age is not None:
                batch.expire.append((kind, now - age))
        batch.prune_before = now - self.config.keep_delivered_s
