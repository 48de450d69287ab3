"""The outbox contract, run against every backend (memory and SQLite)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.store.config import StoreConfig
from gateway.store.memory import MemoryBackend
from gateway.store.outbox import Outbox, OutboxStats
from gateway.store.records import Selection
from gateway.store.sqlite import SqliteBackend


class FakeClock:
    """Wall-clock stand-in the tests move by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


MakeOutbox = Callable[..., Outbox]


@pytest.fixture(params=["memory", "sqlite"])
def make_outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeOutbox]:
    opened: list[Outbox] = []

    def make(config: StoreConfig | None = None, **kwargs: Any) -> Outbox:
        cfg = config or StoreConfig()
        backend = MemoryBackend() if request.param == "memory" else SqliteBackend(tmp_path / "outbox.db")
        ob = Outbox(backend, cfg, **kwargs)
        opened.append(ob)
        return ob

    yield make
    for ob in opened:
        ob.close()


def put_n(ob: Outbox, n: int, kind: str = "event", size: int = 10, **kw: Any) -> list[str]:
    ids = []
    for i in range(n):
        rid = ob.put(kind, "p1", f"edge/gw/p1/{kind}", str(i).encode().ljust(size, b"."), **kw)
        assert rid is not None
        ids.append(rid)
    return ids


def accounted(s: OutboxStats) -> bool:
    c = s.counters
    return c["stored"] == s.rows + c["dropped"] + c["expired"] + c["purged"] + c["pruned"]


def test_records_are_handed_out_only_after_they_are_committed(make_outbox: MakeOutbox) -> None:
    ob = make_outbox(StoreConfig(flush_interval_s=10, batch_size=10_000))
    ids = put_n(ob, 3)
    assert ob.pending("local") == []  # queued, not yet written: not publishable
    ob.flush()
    assert [r.id for r in ob.pending("local")] == ids


def test_pending_is_oldest_first_and_skips_records_in_flight(make_outbox: MakeOutbox) -> None:
    ob = make_outbox()
    ids = put_n(ob, 10)
    ob.flush()
    first = ob.pending("local", 4)
    assert [r.id for r in first] == ids[:4]
    ob.mark_in_flight("local", first)
    assert [r.id for r in ob.pending("local", 100)] == ids[4:]
    assert ob.in_flight("local") == 4
    assert ob.requeue("local") == 4
    assert [r.id for r in ob.pending("local", 100)] == ids


def test_acknowledged_records_are_no_longer_pending_and_are_counted(make_outbox: MakeOutbox) -> None:
    ob = make_outbox()
    ids = put_n(ob, 5)
    ob.flush()
    batch = ob.pending("local")
    ob.mark_in_flight("local", batch)
    ob.mark_delivered("local", ids[:3])
    assert [r.id for r in ob.pending("local")] == []  # 3 delivered, 2 still in flight
    ob.flush()
    ob.requeue("local")
    assert [r.id for r in ob.pending("local")] == ids[3:]
    stats = ob.stats()
    assert stats.destinations["local"].delivered == 3
    assert stats.destinations["local"].pending == 2
    ob.mark_delivered("local", ids[:3])  # a late duplicate ack changes nothing
    ob.flush()
    assert ob.stats().destinations["local"].delivered == 3


def test_sending_again_is_counted_as_a_possible_duplicate(make_outbox: MakeOutbox) -> None:
    ob = make_outbox()
    put_n(ob, 4)
    ob.flush()
    first = ob.pending("local")
    ob.mark_in_flight("local", first)
    ob.mark_sent("local", first[-1].id)
    assert ob.stats().counters["duplicates"] == 0
    ob.requeue("local")
    again = ob.pending("local")
    assert all("local" in r.sent_to for r in again)
    ob.mark_in_flight("local", again)
    ob.flush()
    assert ob.stats().counters["duplicates"] == 4


def test_each_destination_has_its_own_delivery_state(make_outbox: MakeOutbox) -> None:
    ob = make_outbox()
    both = put_n(ob, 2, kind="summary", destinations=("local", "cloud"))
    local_only = put_n(ob, 2, kind="event")
    ob.flush()
    assert [r.id for r in ob.pending("cloud")] == both
    assert [r.id for r in ob.pending("local")] == sorted(both + local_only)
    ob.mark_delivered("local", both + local_only)
    ob.flush()
    assert ob.pending("local") == []
    assert [r.id for r in ob.pending("cloud")] == both
    assert ob.pending("cloud")[0].pending_to == frozenset({"cloud"})


def test_drop_oldest_keeps_the_newest_and_counts_exactly(make_outbox: MakeOutbox) -> None:
    cfg = StoreConfig(limits={"event": {"max_rows": 10, "when_full": "drop_oldest"}}, batch_size=7)
    ob = make_outbox(cfg)
    ids = put_n(ob, 25)
    ob.flush()
    s = ob.stats()
    assert [r.id for r in ob.pending("local", 100)] == ids[-10:]
    assert (s.rows, s.counters["stored"], s.counters["dropped"], s.counters["rejected"]) == (10, 25, 15, 0)
    assert accounted(s)


def test_reject_new_keeps_what_is_stored_and_counts_exactly(make_outbox: MakeOutbox) -> None:
    cfg = StoreConfig(limits={"summary": {"max_bytes": 100, "when_full": "reject_new"}})
    ob = make_outbox(cfg)
    ids = put_n(ob, 15, kind="summary", size=10)
    ob.flush()
    s = ob.stats()
    assert [r.id for r in ob.pending("local", 100)] == ids[:10]
    assert (s.bytes, s.counters["stored"], s.counters["rejected"], s.counters["dropped"]) == (100, 10, 5, 0)
    assert accounted(s)


def test_a_full_kind_first_gives_up_delivered_history(make_outbox: MakeOutbox) -> None:
    cfg = StoreConfig(limits={"event": {"max_rows": 5, "when_full": "reject_new"}}, keep_delivered_s=3600)
    ob = make_outbox(cfg)
    first = put_n(ob, 5)
    ob.flush()
    ob.mark_delivered("local", first[:3])
    ob.flush()
    later = put_n(ob, 5)
    ob.flush()
    s = ob.stats()
    assert [r.id for r in ob.records(limit=100)] == first[3:] + later[:3]
    assert (s.counters["pruned"], s.counters["rejected"], s.counters["dropped"]) == (3, 2, 0)
    assert accounted(s)


def test_a_record_larger_than_the_byte_cap_is_rejected(make_outbox: MakeOutbox) -> None:
    ob = make_outbox(StoreConfig(limits={"event": {"max_bytes": 50, "when_full": "drop_oldest"}}))
    put_n(ob, 2, size=20)
    ob.put("event", "p1", "t", b"x" * 51)
    ob.flush()
    s = ob.stats()
    assert (s.rows, s.counters["rejected"], s.counters["dropped"]) == (2, 1, 0)


def test_caps_apply_per_kind(make_outbox: MakeOutbox) -> None:
    cfg = StoreConfig(limits={"event": {"max_rows": 3}, "summary": {"max_rows": 100}}, default_limits={"max_rows": 1})
    ob = make_outbox(cfg)
    put_n(ob, 6, kind="event")
    put_n(ob, 6, kind="summary")
    put_n(ob, 6, kind="health")
    ob.flush()
    s = ob.stats()
    assert {k: rows for k, (rows, _) in s.by_kind.items()} == {"event": 3, "summary": 6, "health": 1}
    assert s.counters["dropped"] == 3 + 5
    assert accounted(s)


def test_old_records_expire_and_delivered_ones_are_pruned(make_outbox: MakeOutbox) -> None:
    clock = FakeClock()
    cfg = StoreConfig(limits={"event": {"max_age_s": 60}}, keep_delivered_s=10, maintenance_interval_s=0.05)
    ob = make_outbox(cfg, clock=clock)
    old = put_n(ob, 4)
    ob.flush()
    ob.mark_delivered("local", old[:1])
    ob.flush()
    clock.now += 30  # the delivered one is past keep_delivered_s, the rest still young
    young = put_n(ob, 2)
    ob.flush()
    ob.put("summary", "p1", "t", b"{}")  # a write makes the writer run its maintenance pass
    _wait_for(lambda: ob.stats().counters["pruned"] == 1)
    clock.now += 40  # the three undelivered old ones are now 70 s old
    _wait_for(lambda: ob.stats().counters["expired"] == 3)
    s = ob.stats()
    assert [r.id for r in ob.pending("local", 100) if r.kind == "event"] == young
    assert accounted(s)


def test_oldest_unsent_age_is_reported_per_destination(make_outbox: MakeOutbox) -> None:
    clock = FakeClock()
    ob = make_outbox(clock=clock)
    put_n(ob, 1, kind="summary", destinations=("local", "cloud"))
    ob.flush()
    clock.now += 42
    s = ob.stats()
    assert s.destinations["cloud"].oldest_unsent_age_s == pytest.approx(42)
    ob.mark_delivered("cloud", [r.id for r in ob.pending("cloud")])
    ob.flush()
    s = ob.stats()
    assert s.destinations["cloud"].oldest_unsent_age_s is None
    assert s.destinations["local"].oldest_unsent_age_s == pytest.approx(42)


def test_replay_sends_delivered_records_again(make_outbox: MakeOutbox) -> None:
    ob = make_outbox()
    ids = put_n(ob, 3)
    ob.flush()
    recs = ob.pending("local")
    ob.mark_in_flight("local", recs)
    ob.mark_delivered("local", ids)
    ob.flush()
    assert ob.pending("local") == []
    ob.replay("local", Selection(kind="event"))
    ob.flush()
    assert [r.id for r in ob.pending("local")] == ids
    assert ob.stats().counters["replayed"] == 3


def test_purge_removes_matching_records_with_exact_counters(make_outbox: MakeOutbox) -> None:
    ob = make_outbox()
    delivered = put_n(ob, 2)
    waiting = put_n(ob, 3)
    other = ob.put("event", "p2", "t", b"x")
    ob.flush()
    ob.mark_delivered("local", delivered)
    ob.flush()
    ob.purge(Selection(pipeline="p1"))  # delivered history only
    ob.flush()
    assert ob.stats().counters["pruned"] == 2
    ob.purge(Selection(pipeline="p1"), undelivered_too=True)
    ob.flush()
    s = ob.stats()
    assert [r.id for r in ob.pending("local")] == [other]
    assert (s.counters["purged"], s.rows) == (3, 1)
    assert len(waiting) == 3 and accounted(s)


def test_unknown_destinations_are_refused(make_outbox: MakeOutbox) -> None:
    ob = make_outbox()
    with pytest.raises(ValueError, match="unknown destination"):
        ob.put("event", "p", "t", b"", destinations=("satellite",))
    with pytest.raises(ValueError, match="unknown destination"):
        ob.pending("satellite")


def test_concurrent_producers_and_a_consumer_lose_nothing(make_outbox: MakeOutbox) -> None:
    ob = make_outbox(StoreConfig(batch_size=64, flush_interval_s=0.001))
    produced: list[str] = []
    lock = threading.Lock()

    def produce(worker: int) -> None:
        for i in range(300):
            rid = ob.put("event", f"p{worker}", "t", f"{worker}-{i}".encode())
            assert rid is not None
            with lock:
                produced.append(rid)

    delivered: list[str] = []
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set() or ob.stats().destinations["local"].pending:
            batch = ob.pending("local", 50)
            if not batch:
                stop.wait(0.002)
                continue
            ob.mark_in_flight("local", batch)
            ob.mark_delivered("local", [r.id for r in batch])
            delivered.extend(r.id for r in batch)
            ob.flush()

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    consumer = threading.Thread(target=consume)
    consumer.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ob.flush()
    stop.set()
    consumer.join(30)
    assert sorted(delivered) == sorted(produced)
    assert len(set(delivered)) == len(delivered) == 1200
    s = ob.stats()
    assert (s.counters["stored"], s.destinations["local"].delivered, s.counters["duplicates"]) == (1200, 1200, 0)


def test_random_operations_keep_the_books_balanced(make_outbox: MakeOutbox) -> None:
    rng = random.Random(7)
    clock = FakeClock()
    cfg = StoreConfig(
        limits={
            "event": {"max_rows": 40, "max_bytes": 3000, "max_age_s": 50, "when_full": "drop_oldest"},
            "summary": {"max_rows": 15, "when_full": "reject_new"},
        },
        keep_delivered_s=20,
        maintenance_interval_s=0.01,
        batch_size=9,
    )
    ob = make_outbox(cfg, clock=clock)
    puts = 0
    for _ in range(400):
        op = rng.random()
        if op < 0.6:
            kind = rng.choice(["event", "summary"])
            ob.put(
                kind, "p", "t", b"x" * rng.randint(1, 200), destinations=rng.choice([("local",), ("local", "cloud")])
            )
            puts += 1
        elif op < 0.8:
            dest = rng.choice(["local", "cloud"])
            batch = ob.pending(dest, rng.randint(1, 10))
            ob.mark_in_flight(dest, batch)
            ob.mark_delivered(dest, [r.id for r in batch if rng.random() < 0.8])
        elif op < 0.9:
            ob.requeue(rng.choice(["local", "cloud"]))
        else:
            clock.now += rng.uniform(0, 10)
        if rng.random() < 0.2:
            ob.flush()
    ob.flush()
    s = ob.stats()
    assert accounted(s)
    assert s.counters["stored"] + s.counters["rejected"] == puts
    assert s.by_kind.get("event", (0, 0))[0] <= 40 and s.by_kind.get("event", (0, 0))[1] <= 3000
    assert s.by_kind.get("summary", (0, 0))[0] <= 15


def _wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)
