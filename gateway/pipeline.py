"""A pipeline: a bounded input queue with an overflow policy, and one worker thread running a plugin.

The MQTT callback thread only enqueues (``offer``); decoding, the plugin and publishing happen on the
worker. Scheduler work for the plugin (summaries) is handed to the worker with ``call_soon`` so the plugin
is only ever called from one thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.decode import DecodeError, decode_frame, decode_readings
from gateway.messages import InputMessage, Output, RawMessage
from gateway.metrics import PipelineCounters
from gateway.plugin import Plugin

log = logging.getLogger(__name__)

DEFAULTS = {"frames": (8, "keep_newest"), "readings": (10_000, "block"), "raw": (10_000, "block")}


@dataclass(frozen=True, slots=True)
class Rejection:
    """Input a pipeline could not take or could not use, with the reason (published on the errors topic)."""

    pipeline: str
    topic: str
    reason: str
    size: int


class InputQueue:
    """A bounded FIFO with one of three policies when full: keep_newest, block (then reject), reject_new.

    The worker takes messages in batches. While input is flowing it polls every millisecond instead of being
    woken for each message: waking a thread per message costs two interpreter hand-offs, which under load
    cost more than the work itself. After ``IDLE_AFTER_S`` without input it sleeps until woken.
    """

    POLL_S = 0.005
    IDLE_AFTER_S = 0.05
    WAKE_BATCH = 256

    def __init__(self, size: int, policy: str, block_timeout_s: float) -> None:
        self.size = size
        self.policy = policy
        self.block_timeout_s = block_timeout_s
        self._items: deque[InputMessage] = deque()
        self._calls: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self._worker_sleeping = False
        self._blocked = 0
        self._last_input = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def _wake_worker(self) -> None:
        if self._worker_sleeping or len(self._items) >= self.WAKE_BATCH:
            self._not_empty.notify()

    def put(self, item: InputMessage) -> tuple[bool, InputMessage | None]:
        """Queue ``item``. Returns (accepted, displaced): displaced is the message dropped to make room."""
        with self._lock:
            if self._closed:
                return False, None
            if len(self._items) >= self.size:
                if self.policy == "keep_newest":
                    displaced = self._items.popleft()
                    self._items.append(item)
                    self._wake_worker()
                    return True, displaced
                if self.policy == "block":
                    deadline = time.monotonic() + self.block_timeout_s
                    self._blocked += 1
                    try:
                        while len(self._items) >= self.size and not self._closed:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                return False, None
                            self._not_full.wait(left)
                    finally:
                        self._blocked -= 1
                    if self._closed:
                        return False, None
                else:
                    return False, None
            self._items.append(item)
            self._wake_worker()
            return True, None

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the worker before the next message (never dropped by the policy)."""
        with self._lock:
            self._calls.append(fn)
            self._not_empty.notify()

    def get_batch(self, max_items: int, timeout: float) -> tuple[list[Callable[[], None]], list[InputMessage]]:
        """Pending control calls and up to ``max_items`` messages; both empty on timeout or when closed and empty."""
        with self._lock:
            if not self._calls and not self._items and not self._closed:
                if time.monotonic() - self._last_input < self.IDLE_AFTER_S:
                    self._not_empty.wait(self.POLL_S)  # input is flowing: poll, nobody needs to wake us
                else:
                    self._worker_sleeping = True
                    try:
                        self._not_empty.wait(timeout)
                    finally:
                        self._worker_sleeping = False
            calls = list(self._calls)
            self._calls.clear()
            n = min(max_items, len(self._items))
            items = [self._items.popleft() for _ in range(n)]
            if n:
                self._last_input = time.monotonic()
                if self._blocked:
                    self._not_full.notify_all()  # room for blocked producers
            return calls, items

    def close(self) -> None:
        """Refuse new input; what is queued can still be taken."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class Pipeline:
    """Runs one plugin over the messages routed to it, on its own worker thread."""

    def __init__(
        self,
        name: str,
        plugin: Plugin[Any],
        queue: InputQueue,
        max_payload_bytes: int,
        publish: Callable[[Pipeline, list[Output]], None],
        reject: Callable[[Rejection], None],
    ) -> None:
        self.name = name
        self.plugin = plugin
        self.queue = queue
        self.counters = PipelineCounters()
        self._max_payload = max_payload_bytes
        self._publish = publish
        self._reject = reject
        self._thread = threading.Thread(target=self._run, name=f"pipeline-{name}", daemon=True)
        self._stop_now = threading.Event()
        kind = plugin.input_kind
        self._decode: Callable[[RawMessage], InputMessage] = (
            decode_frame if kind == "frames" else decode_readings if kind == "readings" else (lambda m: m)
        )

    # -- intake (MQTT callback thread, or a plugin's own sources) -------------------------------------
    def offer(self, message: InputMessage) -> None:
        """Queue a message for the worker, applying the overflow policy; never blocks longer than the policy says."""
        c = self.counters
        with c._lock:  # intake may come from the MQTT thread and from a plugin's own source threads
            c.received += 1
        size = len(message.payload) if isinstance(message, RawMessage) else 0
        if size > self._max_payload:
            self.counters.add("rejected")
            self._reject(
                Rejection(
                    self.name, message.topic, f"payload of {size} bytes is over the limit of {self._max_payload}", size
                )
            )
            return
        accepted, displaced = self.queue.put(message)
        if displaced is not None:
            self.counters.add("dropped")
        if not accepted:
            self.counters.add("rejected")
            reason = (
                "gateway stopping"
                if self.queue.closed
                else f"queue full ({self.queue.size}, policy {self.queue.policy})"
            )
            self._reject(Rejection(self.name, message.topic, reason, size))

    # -- worker -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self.plugin.start()

    def _handle(self, message: InputMessage) -> None:
        start = time.perf_counter()
        if isinstance(message, RawMessage) and self.plugin.input_kind != "raw":
            try:
                decoded = self._decode(message)
            except DecodeError as e:
                self.counters.add("rejected")
                self._reject(Rejection(self.name, message.topic, str(e), len(message.payload)))
                return
        else:
            decoded = message
        try:
            outputs = list(self.plugin.process(decoded))
        except Exception as e:  # a plugin bug must not stop the pipeline
            log.exception(
                "pipeline %s: plugin %s failed on a message from %s", self.name, self.plugin.name, message.topic
            )
            self.counters.add("errors")
            self._reject(Rejection(self.name, message.topic, f"processing failed: {type(e).__name__}: {e}", 0))
            return
        # processed and outputs are only ever changed by this worker thread: no lock needed
        self.counters.processed += 1
        if outputs:
            self.counters.outputs += len(outputs)
            self._publish(self, outputs)
        self.counters.latency.add(time.perf_counter() - start)

    def _run(self) -> None:
        while not self._stop_now.is_set():
            calls, messages = self.queue.get_batch(64, timeout=0.5)
            for call in calls:
                try:
                    call()
                except Exception:
                    log.exception("pipeline %s: scheduled call failed", self.name)
            for message in messages:
                self._handle(message)
            if not calls and not messages and self.queue.closed:
                return

    def emit(self, outputs: list[Output]) -> None:
        """Publish outputs a plugin produced outside ``process`` (from its own threads)."""
        if outputs:
            self.counters.add("outputs", len(outputs))
            self._publish(self, outputs)

    def stop(self, deadline: float) -> int:
        """Stop intake and let the worker drain until ``deadline`` (monotonic). Returns messages left undone."""
        self.queue.close()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        left = len(self.queue)
        if self._thread.is_alive():
            self._stop_now.set()
            self._thread.join(2.0)
        return left

    @property
    def alive(self) -> bool:
        """Whether the worker thread is running."""
        return self._thread.is_alive()

    def snapshot(self) -> dict[str, Any]:
        data = self.counters.snapshot()
        data["queue"] = {"depth": len(self.queue), "size": self.queue.size, "policy": self.queue.policy}
        return data
