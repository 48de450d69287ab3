"""Values the outbox stores and hands out, and the backend contract its storage implements.

A backend only stores and queries; every decision (caps, policies, counters, what is in flight) is
taken by :class:`gateway.store.outbox.Outbox`, so both backends behave the same by construction and
one test suite checks them both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class OutboxRecord(NamedTuple):
    """One stored result waiting for (or already delivered to) its destinations.

    ``id`` is unique and sortable (ULID layout), so ordering by id is ordering by creation and
    consumers can drop duplicates by id. ``pending_to`` are the destinations still to be delivered to;
    ``sent_to`` those it was handed to at least once (sending it there again may duplicate it).
    Immutable; a named tuple because deliverers take thousands per second.
    """

    id: str
    kind: str
    pipeline: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created_at: float
    pending_to: frozenset[str] = frozenset()
    sent_to: frozenset[str] = frozenset()

    @property
    def size(self) -> int:
        """Bytes counted against the byte caps (the payload's length)."""
        return len(self.payload)

    def __repr__(self) -> str:  # without the payload: it may be large or sensitive
        return f"OutboxRecord(id={self.id!r}, kind={self.kind!r}, pipeline={self.pipeline!r}, topic={self.topic!r})"


class StoredRow(NamedTuple):
    """A record as a backend keeps it: delivery state as bit masks over the registered destinations.

    ``targets`` are the destinations it was stored for, ``pending`` those still to be delivered to.
    A named tuple: rows are built by the thousand per second from SQLite's result tuples.
    """

    id: str
    kind: str
    pipeline: str
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created_at: float
    targets: int
    pending: int

    @property
    def size(self) -> int:
        return len(self.payload)


@dataclass(frozen=True, slots=True)
class Victim:
    """What the cap policy needs to know about a stored record it may remove."""

    id: str
    size: int
    pending: int


@dataclass(frozen=True, slots=True)
class Selection:
    """Records chosen by kind, pipeline and creation time (``None`` = any)."""

    kind: str | None = None
    pipeline: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass
class Batch:
    """Everything one writer transaction does, applied in this order."""

    inserts: list[StoredRow] = field(default_factory=list)
    evict: list[str] = field(default_factory=list)
    delivered: list[tuple[int, list[str]]] = field(default_factory=list)
    sent_through: dict[int, str] = field(default_factory=dict)
    replay: list[tuple[int, Selection]] = field(default_factory=list)
    purge: list[tuple[Selection, bool]] = field(default_factory=list)
    expire: list[tuple[str, float]] = field(default_factory=list)
    prune_before: float | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def empty(self) -> bool:
        return not (
            self.inserts
            or self.evict
            or self.delivered
            or self.sent_through
            or self.replay
            or self.purge
            or self.expire
            or self.prune_before is not None
            or any(self.counters.values())
        )


@dataclass
class Outcome:
    """What a committed batch removed or changed beyond its inserts and evictions.

    ``removed`` maps kind to ``[rows, bytes]`` taken away by expiry, pruning and purges; ``counters``
    are the counter increments the backend derived and already persisted (``expired``, ``purged``,
    ``pruned``, ``replayed``, ``delivered:<destination>``).
    """

    removed: dict[str, list[int]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def remove(self, kind: str, rows: int, size: int) -> None:
        entry = self.removed.setdefault(kind, [0, 0])
        entry[0] += rows
        entry[1] += size

    def count(self, name: str, n: int) -> None:
        if n:
            self.counters[name] = self.counters.get(name, 0) + n


class Backend(ABC):
    """Storage of an outbox. ``commit`` and ``oldest`` are called by the writer thread only;
    the read methods may be called from any thread."""

    @abstractmethod
    def open(self) -> None:
        """Create or migrate the storage."""

    @abstractmethod
    def register_destinations(self, names: Sequence[str]) -> dict[str, int]:
        """The bit of each destination, registering new ones (bits are stable across restarts)."""

    @abstractmethod
    def sent_through(self) -> dict[int, str]:
        """Per destination bit, the highest id handed to its link so far."""

    @abstractmethod
    def totals(self) -> dict[str, tuple[int, int]]:
        """Rows and payload bytes stored, by kind."""

    @abstractmethod
    def load_counters(self) -> dict[str, int]:
        """The persisted counters."""

    @abstractmethod
    def oldest(self, kind: str) -> Iterator[Victim]:
        """Stored records of ``kind``, oldest first."""

    @abstractmethod
    def commit(self, batch: Batch, now: float) -> Outcome:
        """Apply ``batch`` atomically (all or nothing); counters persisted in the same transaction."""

    @abstractmethod
    def pending(self, bit: int, limit: int, after: str | None = None) -> list[StoredRow]:
        """Up to ``limit`` records still to be delivered to the destination ``bit``, oldest first
        (only those with an id greater than ``after`` when given)."""

    @abstractmethod
    def pending_summary(self, bit: int) -> tuple[int, float | None]:
        """How many records wait for destination ``bit``, and the creation time of the oldest."""

    @abstractmethod
    def select(self, selection: Selection, limit: int) -> list[StoredRow]:
        """Stored records matching ``selection``, oldest first (for inspection)."""

    def integrity(self) -> str:
        """``ok`` or a description of the damage."""
        return "ok"

    def file_bytes(self) -> int:
        """Bytes the storage occupies on disk (0 in memory)."""
        return 0

    @abstractmethod
    def close(self) -> None:
        """Release the storage."""
