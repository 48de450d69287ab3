"""The in-memory backend of the outbox: the same behaviour as SQLite, nothing survives a restart.

For tests, benchmarks and devices whose only storage is read-only media.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import islice

from gateway.store.records import Backend, Batch, Outcome, Selection, StoredRow, Victim


def _matches(row: StoredRow, s: Selection) -> bool:
    return (
        (s.kind is None or row.kind == s.kind)
        and (s.pipeline is None or row.pipeline == s.pipeline)
        and (s.since is None or row.created_at >= s.since)
        and (s.until is None or row.created_at < s.until)
    )


def _purgeable(selection: Selection, undelivered_too: bool, row: StoredRow) -> bool:
    return _matches(row, selection) and (undelivered_too or not row.pending)


def _expired(kind: str, cutoff: float, row: StoredRow) -> bool:
    return row.kind == kind and row.created_at < cutoff


class MemoryBackend(Backend):
    """Outbox storage in dictionaries ordered by id."""

    def __init__(self) -> None:
        self._rows: dict[str, StoredRow] = {}
        self._bits: dict[str, int] = {}
        self._counters: dict[str, int] = {}
        self._sent_through: dict[int, str] = {}
        self._lock = threading.Lock()
        self._sorted = True
        self._pending: dict[int, dict[str, None]] = {}
        self._unsorted: set[int] = set()

    def open(self) -> None:
        pass

    def register_destinations(self, names: Sequence[str]) -> dict[str, int]:
        with self._lock:
            for name in names:
                if name not in self._bits:
                    used = set(self._bits.values())
                    self._bits[name] = next(1 << i for i in range(62) if (1 << i) not in used)
            return {n: self._bits[n] for n in names}

    def totals(self) -> dict[str, tuple[int, int]]:
        out: dict[str, list[int]] = {}
        with self._lock:
            for row in self._rows.values():
                entry = out.setdefault(row.kind, [0, 0])
                entry[0] += 1
                entry[1] += row.size
        return {k: (v[0], v[1]) for k, v in out.items()}

    def sent_through(self) -> dict[int, str]:
        with self._lock:
            return {bit: self._sent_through.get(bit, "") for bit in self._bits.values()}

    def load_counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def _ordered(self) -> list[StoredRow]:
        # called with the lock held
        if not self._sorted:
            self._rows = dict(sorted(self._rows.items()))
            self._sorted = True
        return list(self._rows.values())

    def oldest(self, kind: str) -> Iterator[Victim]:
        with self._lock:
            rows = [r for r in self._ordered() if r.kind == kind]
        for r in rows:
            yield Victim(r.id, r.size, r.pending)

    def _index(self, bit: int) -> dict[str, None]:
        # called with the lock held; ids waiting for ``bit``, in id order
        ids = self._pending.setdefault(bit, {})
        if bit in self._unsorted:
            ids = self._pending[bit] = dict.fromkeys(sorted(ids))
            self._unsorted.discard(bit)
        return ids

    def _set(self, row: StoredRow) -> None:
        old = self._rows.get(row.id)
        self._rows[row.id] = row
        for bit in self._bits.values():
            was = bool(old is not None and old.pending & bit)
            now = bool(row.pending & bit)
            if now and not was:
                ids = self._pending.setdefault(bit, {})
                if ids and row.id < next(reversed(ids)):
                    self._unsorted.add(bit)
                ids[row.id] = None
            elif was and not now:
                self._pending.get(bit, {}).pop(row.id, None)

    def _drop(self, rid: str) -> StoredRow | None:
        row = self._rows.pop(rid, None)
        if row is not None:
            for bit, ids in self._pending.items():
                if row.pending & bit:
                    ids.pop(rid, None)
        return row

    def commit(self, batch: Batch, now: float) -> Outcome:
        # nothing here can fail half-way, so applying in place is all-or-nothing
        out = Outcome()
        names = {b: n for n, b in self._bits.items()}
        with self._lock:
            rows = self._rows
            for r in batch.inserts:
                if r.id in rows:
                    continue
                if rows and r.id < next(reversed(rows)):
                    self._sorted = False
                self._set(r)
            for rid in batch.evict:
                self._drop(rid)
            for bit, ids in batch.delivered:
                n = 0
                for rid in ids:
                    row = rows.get(rid)
                    if row is not None and row.pending & bit:
                        self._set(row._replace(pending=row.pending & ~bit))
                        n += 1
                out.count(f"delivered:{names.get(bit, bit)}", n)
            for bit, last in batch.sent_through.items():
                self._sent_through[bit] = max(self._sent_through.get(bit, ""), last)
            for bit, selection in batch.replay:
                hits = [r for r in rows.values() if r.targets & bit and not r.pending & bit and _matches(r, selection)]
                for row in hits:
                    self._set(row._replace(pending=row.pending | bit))
                out.count("replayed", len(hits))
            for selection, undelivered_too in batch.purge:
                self._remove(partial(_purgeable, selection, undelivered_too), "purged", out)
            for kind, cutoff in batch.expire:
                self._remove(partial(_expired, kind, cutoff), "expired", out)
            if batch.prune_before is not None:
                before = batch.prune_before
                self._remove(lambda r: not r.pending and r.created_at < before, "pruned", out)
            for name, n in list(batch.counters.items()) + list(out.counters.items()):
                if n:
                    self._counters[name] = self._counters.get(name, 0) + n
        return out

    def _remove(self, match: Callable[[StoredRow], bool], undelivered_counter: str, out: Outcome) -> None:
        gone = [r for r in self._rows.values() if match(r)]
        for r in gone:
            self._drop(r.id)
            out.remove(r.kind, 1, r.size)
            out.count(undelivered_counter if r.pending else "pruned", 1)

    def pending(self, bit: int, limit: int, after: str | None = None) -> list[StoredRow]:
        with self._lock:
            ids: Iterable[str] = self._index(bit)
            if after is not None:
                ids = (rid for rid in ids if rid > after)
            return [self._rows[rid] for rid in islice(ids, limit)]

    def pending_summary(self, bit: int) -> tuple[int, float | None]:
        with self._lock:
            ids = self._index(bit)
            first = next(iter(ids), None)
            return len(ids), (None if first is None else self._rows[first].created_at)

    def select(self, selection: Selection, limit: int) -> list[StoredRow]:
        with self._lock:
            return [r for r in self._ordered() if _matches(r, selection)][:limit]

    def close(self) -> None:
        pass
