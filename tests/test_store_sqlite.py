"""The SQLite outbox on real files: restarts, migrations, pragmas, full and unwritable disks."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.store.config import StoreConfig
from gateway.store.errors import StoreUnavailableError
from gateway.store.outbox import Outbox
from gateway.store.records import Selection
from gateway.store.sqlite import SCHEMA_VERSION, SqliteBackend


def open_outbox(path: Path, **cfg: object) -> Outbox:
    config = StoreConfig(path=path, retry_interval_s=0.05, **cfg)  # type: ignore[arg-type]
    return Outbox.open(config)


def fill_up(path: Path) -> None:
    """Take all the free space of ``path``'s filesystem with a file of zeros (unbuffered, so closing it
    cannot fail on the last buffer)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = b"\0" * 65536
        while True:
            try:
                os.write(fd, chunk)
            except OSError:
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(fd)


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_pending_and_counters_survive_a_restart_and_in_flight_is_sent_again(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    ob = open_outbox(db, limits={"event": {"max_rows": 8}})
    ids = [ob.put("event", "p", "t", b"%d" % i) for i in range(10)]
    ob.flush()
    batch = ob.pending("local", 5)
    ob.mark_in_flight("local", batch)
    ob.mark_sent("local", batch[-1].id)
    ob.mark_delivered("local", [r.id for r in batch[:2]])
    ob.flush()
    ob.close()  # the three unacknowledged ones were in flight

    ob = open_outbox(db, limits={"event": {"max_rows": 8}})
    try:
        again = ob.pending("local", 100)
        assert [r.id for r in again] == ids[4:]
        assert [("local" in r.sent_to) for r in again[:3]] == [True, True, True]
        ob.mark_in_flight("local", again)
        ob.flush()
        s = ob.stats()
        assert (s.counters["stored"], s.counters["dropped"], s.counters["duplicates"]) == (10, 2, 3)
        assert s.destinations["local"].delivered == 2
    finally:
        ob.close()


def test_schema_is_migrated_once_with_its_version_and_wal(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    for _ in range(2):
        open_outbox(db).close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        applied = conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set = 'edge_gateway.outbox'"
        ).fetchall()
        assert applied == [("0001_records",)]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"records_pending_0", "records_pending_1"} <= indexes
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_destination_bits_are_stable_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    ob = Outbox(SqliteBackend(db), StoreConfig(), ("local", "cloud"))
    ob.put("summary", "p", "t", b"s", destinations=("cloud",))
    ob.close()
    ob = Outbox(SqliteBackend(db), StoreConfig(), ("cloud", "local", "archive"))
    try:
        assert [r.payload for r in ob.pending("cloud")] == [b"s"]
        assert ob.pending("local") == [] and ob.pending("archive") == []
    finally:
        ob.close()


def test_a_file_that_is_not_a_database_is_a_clear_typed_error(tmp_path: Path) -> None:
    bad = tmp_path / "outbox.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailableError) as info:
        open_outbox(bad)
    assert info.value.reason == "corrupt" and str(bad) in str(info.value)


def test_database_size_limit_reached_then_raised(tmp_path: Path) -> None:
    """A full database: typed error to the listeners, intake held in memory and counted, recovery."""
    db = tmp_path / "outbox.db"
    ob = open_outbox(db, max_file_bytes=256 * 1024, spill_max_records=50)
    health: list[StoreUnavailableError | None] = []
    ob.add_health_listener(health.append)
    try:
        stored = refused_early = 0
        while not health:
            if ob.put("event", "p", "t", os.urandom(2000)) is None:
                # the writer has found the disk full and refuses before its listeners have been told
                refused_early += 1
                assert wait_for(lambda: bool(health)), "a write was refused but no error reported"
                break
            stored += 1
            assert stored < 1000, "the size limit never triggered"
            time.sleep(0.001)
        first = health[0]
        assert isinstance(first, StoreUnavailableError) and first.reason == "disk_full"
        with pytest.raises(StoreUnavailableError):
            ob.flush(timeout=1)
        accepted = [ob.put("event", "p", "t", b"while full %d" % i) for i in range(80)]
        refused = accepted.count(None)
        s = ob.stats()
        assert not s.healthy and s.error is not None and "disk_full" in s.error
        assert refused >= 30 and s.counters["spill_overflow"] == refused + refused_early
        assert s.queued_writes <= 50

        backend = ob.backend
        assert isinstance(backend, SqliteBackend)
        backend.set_max_file_bytes(None)  # space returns
        assert wait_for(lambda: health[-1] is None), "no recovery reported"
        ob.flush()
        s = ob.stats()
        assert s.healthy
        assert s.counters["stored"] == stored + 80 - refused
        assert s.destinations["local"].pending == s.counters["stored"]
        assert ob.integrity() == "ok"
    finally:
        ob.close()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (needs the right to mount; skipped elsewhere)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_real_full_filesystem_is_reported_and_recovered(small_fs: Path) -> None:
    ob = open_outbox(small_fs / "outbox.db", spill_max_records=10_000)
    health: list[StoreUnavailableError | None] = []
    ob.add_health_listener(health.append)
    filler = small_fs / "filler"
    try:
        ids = [ob.put("event", "p", "t", b"before") for _ in range(10)]
        ob.flush()
        fill_up(filler)
        spilled = [ob.put("event", "p", "t", os.urandom(4000)) for _ in range(200)]
        assert wait_for(lambda: bool(health)), "a full disk was not reported"
        err = health[0]
        assert err is not None and err.reason in ("disk_full", "io_error")
        filler.unlink()
        assert wait_for(lambda: health[-1] is None), "no recovery reported"
        ob.flush()
        pending = [r.id for r in ob.pending("local", 1000)]
        assert pending == ids + spilled
        assert ob.integrity() == "ok"
    finally:
        ob.close()


def test_a_read_only_filesystem_at_start_is_a_clear_typed_error(tmp_path: Path) -> None:
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only filesystem needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        with pytest.raises(StoreUnavailableError) as info:
            open_outbox(mnt / "outbox.db")
        assert info.value.reason in ("read_only", "cannot_open")
        assert str(mnt / "outbox.db") in str(info.value)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_purge_by_another_process_is_noticed_by_the_running_outbox(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    limits = {"event": {"max_rows": 10, "when_full": "reject_new"}}
    ob = open_outbox(db, maintenance_interval_s=0.05, limits=limits)
    try:
        for i in range(10):
            ob.put("event", "p", "t", b"%d" % i)
        ob.flush()
        other = open_outbox(db, limits=limits)  # what `edge-gateway outbox purge` does
        other.purge(Selection(), undelivered_too=True)
        other.flush()
        other.close()
        assert wait_for(lambda: ob.stats().rows == 0), "the running outbox kept the old sizes"
        for i in range(5):
            ob.put("event", "p", "t", b"after %d" % i)
        ob.flush()
        s = ob.stats()
        assert (s.rows, s.counters["rejected"], s.counters["purged"]) == (5, 0, 10)
    finally:
        ob.close()


def test_service_runs_on_memory_and_says_so_when_the_store_cannot_be_opened(tmp_path: Path) -> None:
    from gateway.store.config import CloudConfig
    from gateway.store.service import StoreService
    from tests.test_outbox_delivery import ScriptedLink

    bad = tmp_path / "outbox.db"
    bad.write_bytes(b"not a database" * 100)
    reported: list[tuple[str, str]] = []
    link = ScriptedLink()
    service = StoreService(
        StoreConfig(path=bad), CloudConfig(), "gw", link, on_error=lambda r, d: reported.append((r, d))
    ).start()
    try:
        assert reported and reported[0][0] == "store_corrupt" and "memory" in reported[0][1]

        class Rec:
            id, kind, pipeline, topic, payload, qos, retain, created_at = (
                "01J0",
                "event",
                "p",
                "t/e",
                b"x",
                1,
                False,
                1.0,
            )

        service.submit([Rec()])  # intake still works, delivered from memory
        assert wait_for(lambda: link.payloads() == [b"x"])
        assert service.stats()["local"]["acknowledged"] == 1
    finally:
        service.stop()
