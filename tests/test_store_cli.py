"""``edge-gateway outbox status|replay|purge`` on a real store file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from gateway.store.cli import outbox_purge, outbox_replay, outbox_status, register_cli
from gateway.store.config import StoreConfig
from gateway.store.outbox import Outbox
from gateway.store.records import Selection


@pytest.fixture
def store(tmp_path: Path) -> StoreConfig:
    """A store with 4 delivered events, 3 waiting events and 2 summaries waiting for the cloud."""
    cfg = StoreConfig(path=tmp_path / "outbox.db")
    ob = Outbox.open(cfg)
    delivered = [ob.put("event", "cam-1", "edge/gw/cam-1/event", b"e%d" % i) for i in range(4)]
    for i in range(3):
        ob.put("event", "cam-2", "edge/gw/cam-2/event", b"w%d" % i)
    for i in range(2):
        ob.put("summary", "cam-1", "edge/gw/cam-1/summary", b"s%d" % i, destinations=("local", "cloud"))
    ob.flush()
    ob.mark_in_flight("local", ob.pending("local", 4))
    ob.mark_delivered("local", [d for d in delivered if d])
    ob.close()
    return cfg


def test_status_reports_backlog_and_counters(store: StoreConfig) -> None:
    doc = outbox_status(store, check=True)
    assert doc["rows"] == 9 and doc["integrity"] == "ok"
    assert doc["destinations"]["local"]["pending"] == 5
    assert doc["destinations"]["cloud"]["pending"] == 2
    assert doc["destinations"]["local"]["delivered"] == 4
    assert doc["counters"]["stored"] == 9
    assert doc["by_kind"] == {"event": {"rows": 7, "bytes": 14}, "summary": {"rows": 2, "bytes": 4}}


def test_replay_requeues_only_what_was_sent(store: StoreConfig) -> None:
    assert outbox_replay(store, "local", Selection(pipeline="cam-2")) == 0  # never sent
    assert outbox_replay(store, "local", Selection(kind="event")) == 4
    assert outbox_status(store)["destinations"]["local"]["pending"] == 9


def test_purge_removes_delivered_history_then_undelivered_on_request(store: StoreConfig) -> None:
    assert outbox_purge(store) == {"purged": 0, "pruned": 4}
    assert outbox_purge(store, Selection(kind="summary"), undelivered_too=True) == {"purged": 2, "pruned": 0}
    doc = outbox_status(store)
    assert doc["rows"] == 3
    assert doc["counters"]["stored"] == doc["rows"] + doc["counters"]["purged"] + doc["counters"]["pruned"]


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="edge-gateway")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_command_line_prints_status_as_json(store: StoreConfig, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["outbox", "status", "--db", str(store.path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["destinations"]["cloud"]["pending"] == 2


def test_command_line_status_for_people(store: StoreConfig, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["outbox", "status", "--db", str(store.path)]) == 0
    out = capsys.readouterr().out
    assert "pending" in out and "summary" in out


def test_command_line_refuses_to_drop_undelivered_without_confirmation(
    store: StoreConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main(["outbox", "purge", "--db", str(store.path), "--undelivered"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert _main(["outbox", "purge", "--db", str(store.path), "--undelivered", "--yes", "--since", "1h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 5, "pruned": 4}


def test_command_line_on_a_missing_store_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["outbox", "status", "--db", str(tmp_path / "nope.db")]) == 1
    assert "no database" in capsys.readouterr().err


def test_command_line_reads_the_store_path_from_the_gateway_config(
    store: StoreConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("gateway.config")
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(f"gateway_id: gw\ndata_dir: {tmp_path}\nstore:\n  path: outbox.db\n")
    assert _main(["outbox", "replay", "-c", str(cfg), "--kind", "event", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"replayed": 4}
