"""Helpers shared by the benchmarks: medians, ratios and a table printer."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio_line(name: str, ours: Sequence[float], base: Sequence[float], unit: str, target: float | None = None) -> str:
    """'name: ours (median) vs base (median) unit -> ratio [target]'."""
    r = median(ours) / median(base) if median(base) else float("nan")
    verdict = "" if target is None else f"  (target >= {target:.2f}: {'met' if r >= target else 'NOT met'})"
    runs = ", ".join(f"{v:,.0f}" for v in ours)
    bruns = ", ".join(f"{v:,.0f}" for v in base)
    return (
        f"{name}: {median(ours):,.0f} vs {median(base):,.0f} {unit} -> ratio {r:.3f}{verdict}\n"
        f"    runs: ours [{runs}]  baseline [{bruns}]"
    )
