"""Routes each received message to every pipeline whose topic filters match it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from gateway.messages import RawMessage
from gateway.pipeline import Pipeline

log = logging.getLogger(__name__)


def covers(wide: str, narrow: str) -> bool:
    """Whether every topic matched by filter ``narrow`` is also matched by filter ``wide``."""
    w, n = wide.split("/"), narrow.split("/")
    for i, level in enumerate(w):
        if level == "#":
            return True
        if i >= len(n) or n[i] == "#":
            return False
        if level != "+" and (n[i] == "+" or level != n[i]):
            return False
    return len(w) == len(n)


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (MQTT wildcards ``+`` and ``#``), without building a matcher."""
    if topic_filter == topic or topic_filter == "#":
        return not topic.startswith("$") or topic_filter == topic
    f, t = topic_filter.split("/"), topic.split("/")
    if t[0].startswith("$") and f[0] in ("+", "#"):
        return False  # wildcards do not match $SYS-style topics
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


def may_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both filters."""
    x, y = a.split("/"), b.split("/")
    for i in range(max(len(x), len(y))):
        p = x[i] if i < len(x) else None
        q = y[i] if i < len(y) else None
        if p == "#" or q == "#":
            return True
        if p is None or q is None:
            return False
        if p != q and p != "+" and q != "+":
            return False
    return True


def minimal_filters(filters: Sequence[str]) -> list[str]:
    """The filters with those covered by another removed, so the broker does not send one message twice."""
    unique = sorted(set(filters))
    return [f for f in unique if not any(o != f and covers(o, f) for o in unique)]


class Router:
    """Topic filter -> pipelines. Runs on the MQTT network thread and does no work but enqueueing."""

    def __init__(self, routes: Sequence[tuple[str, Pipeline]]) -> None:
        self._routes = list(routes)
        self._cache: dict[str, tuple[Pipeline, ...]] = {}
        self._accepting = threading.Event()
        self._accepting.set()
        self.unrouted = 0

    def filters(self) -> list[str]:
        """The filters to subscribe to: distinct, none covered by another."""
        return minimal_filters([f for f, _ in self._routes])

    def pipelines_for(self, topic: str) -> tuple[Pipeline, ...]:
        hit = self._cache.get(topic)
        if hit is None:
            seen: dict[str, Pipeline] = {}
            for f, p in self._routes:
                if p.name not in seen and matches(f, topic):
                    seen[p.name] = p
            hit = tuple(seen.values())
            if len(self._cache) < 10_000:  # bound the cache: topics with ids in them are unbounded
                self._cache[topic] = hit
        return hit

    def stop_intake(self) -> None:
        """From now on messages are not taken (and not acknowledged, so the broker keeps them)."""
        self._accepting.clear()

    def dispatch(self, message: RawMessage) -> bool:
        """Hand ``message`` to its pipelines. Returns False when intake has stopped (leave it unacknowledged)."""
        if not self._accepting.is_set():
            return False
        pipelines = self.pipelines_for(message.topic)
        if not pipelines:
            self.unrouted += 1
        for p in pipelines:
            p.offer(message)
        return True
