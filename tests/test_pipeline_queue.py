"""Pipeline queues: the overflow policies and the accounting of every message."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

from gateway.messages import InputMessage, Output, RawMessage, State
from gateway.pipeline import InputQueue, Pipeline, Rejection
from gateway.plugin import Plugin, PluginContext, PluginOptions
from gateway.statestore import StateStore


def msg(i: int) -> RawMessage:
    return RawMessage(f"t/{i}", b'{"value": %d}' % i, 1, False, time.time())


def test_keep_newest_drops_the_oldest() -> None:
    q = InputQueue(3, "keep_newest", 0)
    results = [q.put(msg(i)) for i in range(5)]
    assert [r[0] for r in results] == [True] * 5
    assert [r[1].topic for r in results if r[1] is not None] == ["t/0", "t/1"]
    assert [m.topic for m in q.get_batch(10, 0)[1]] == ["t/2", "t/3", "t/4"]


def test_reject_new_keeps_what_is_queued() -> None:
    q = InputQueue(2, "reject_new", 0)
    assert [q.put(msg(i))[0] for i in range(3)] == [True, True, False]
    assert len(q) == 2


def test_block_waits_for_room_then_gives_up() -> None:
    q = InputQueue(1, "block", 0.3)
    q.put(msg(0))
    t0 = time.monotonic()
    assert q.put(msg(1)) == (False, None)
    assert time.monotonic() - t0 >= 0.25
    threading.Timer(0.1, lambda: q.get_batch(1, 0)).start()
    assert q.put(msg(2)) == (True, None)  # room made while waiting


def test_control_calls_bypass_a_full_queue() -> None:
    q = InputQueue(1, "keep_newest", 0)
    q.put(msg(0))
    ran: list[int] = []
    q.call_soon(lambda: ran.append(1))
    calls, items = q.get_batch(0, 0)
    assert len(calls) == 1 and items == []


class Recording(Plugin[PluginOptions]):
    """Records what it gets; fails on topic t/bad."""

    name = "recording"
    input_kind = "readings"

    def __init__(self, options: PluginOptions, context: PluginContext) -> None:
        super().__init__(options, context)
        self.seen: list[float] = []
        self.gate = threading.Event()
        self.gate.set()

    def process(self, message: InputMessage) -> Iterable[Output]:
        self.gate.wait(10)
        assert message.topic != "t/bad", "boom"
        self.seen.append(message.readings[0].values["value"])  # type: ignore[union-attr]
        return [State({"n": len(self.seen)})]


def _pipeline(tmp_path: Path, size: int, policy: str) -> tuple[Pipeline, list[Rejection], list[list[Output]]]:
    ctx = PluginContext(
        "p",
        "gw",
        __import__("logging").getLogger("t"),
        time.time,
        tmp_path,
        models=None,  # type: ignore[arg-type]
        state=StateStore(tmp_path / "s.db", "p"),
    )
    rejected: list[Rejection] = []
    published: list[list[Output]] = []
    p = Pipeline(
        "p",
        Recording(PluginOptions(), ctx),
        InputQueue(size, policy, 0.05),
        100,
        lambda _p, outs: published.append(outs),
        rejected.append,
    )
    return p, rejected, published


def test_every_message_is_accounted_for(tmp_path: Path) -> None:
    p, rejected, published = _pipeline(tmp_path, 2, "reject_new")
    plugin: Recording = p.plugin  # type: ignore[assignment]
    plugin.gate.clear()  # hold the worker so the queue fills
    p.start()
    for i in range(6):
        p.offer(msg(i))
    p.offer(RawMessage("t/big", b"x" * 200, 1, False, 0))
    p.offer(RawMessage("t/json", b"{nope", 1, False, 0))
    p.offer(RawMessage("t/bad", b'{"value": 1}', 1, False, 0))
    plugin.gate.set()
    p.stop(time.monotonic() + 5)
    c = p.counters
    assert c.received == 9
    assert c.received == c.processed + c.rejected + c.dropped + c.errors
    assert c.errors == 0 or "boom" in " ".join(r.reason for r in rejected)
    reasons = " | ".join(r.reason for r in rejected)
    assert "over the limit" in reasons and "queue full" in reasons
    assert len(published) == c.processed


def test_a_failing_plugin_does_not_stop_the_pipeline(tmp_path: Path) -> None:
    p, rejected, published = _pipeline(tmp_path, 10, "block")
    p.start()
    p.offer(RawMessage("t/bad", b'{"value": 1}', 1, False, 0))
    p.offer(msg(7))
    p.stop(time.monotonic() + 5)
    assert p.counters.errors == 1 and p.counters.processed == 1
    assert "processing failed: AssertionError: boom" in rejected[0].reason
    assert p.plugin.seen == [7.0]  # type: ignore[attr-defined]
