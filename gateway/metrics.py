"""Counters and latency figures for the metrics message, and the process's own resource use."""

from __future__ import annotations

import os
import resource
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class LatencyWindow:
    """The last ``size`` durations (seconds), for p50/p95 without keeping history."""

    def __init__(self, size: int = 1024) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)  # deque.append is atomic: no lock on the hot path

    def percentiles_ms(self) -> dict[str, float | None]:
        values = np.array(tuple(self._values), dtype=np.float64)  # tuple() copies atomically
        if values.size == 0:
            return {"p50": None, "p95": None}
        p50, p95 = np.percentile(values, [50, 95])
        return {"p50": round(float(p50) * 1000, 3), "p95": round(float(p95) * 1000, 3)}


@dataclass
class PipelineCounters:
    """What a pipeline did since start: every message is in exactly one of processed, rejected, dropped or queued."""

    received: int = 0
    processed: int = 0
    outputs: int = 0
    rejected: int = 0
    dropped: int = 0
    errors: int = 0
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            data = {
                "in": self.received,
                "processed": self.processed,
                "out": self.outputs,
                "rejected": self.rejected,
                "dropped": self.dropped,
                "errors": self.errors,
            }
        data["latency_ms"] = self.latency.percentiles_ms()
        return data


class ProcessStats:
    """Resident memory and CPU use of this process (Linux /proc; falls back to getrusage)."""

    def __init__(self) -> None:
        self._last_cpu = self._cpu_seconds()
        self._last_wall = time.monotonic()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    @staticmethod
    def _cpu_seconds() -> float:
        t = os.times()
        return t.user + t.system

    def rss_bytes(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def snapshot(self) -> dict[str, Any]:
        cpu, wall = self._cpu_seconds(), time.monotonic()
        pct = 100.0 * (cpu - self._last_cpu) / max(wall - self._last_wall, 1e-6)
        self._last_cpu, self._last_wall = cpu, wall
        return {
            "rss_mb": round(self.rss_bytes() / 2**20, 1),
            "cpu_percent": round(pct, 1),
            "threads": threading.active_count(),
        }
