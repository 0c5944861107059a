"""Small measurement helpers shared by the benchmark modules."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `repeats` calls of `fn` after `warmup` untimed ones.

    `fn` must wait for its own work (synchronise a GPU) so the wall time covers it."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return seconds


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., ...}``; NaN for an empty sample (nothing measured, not zero)."""
    if not values:
        return {f"p{p}": float("nan") for p in points}
    array = np.asarray(values, dtype=np.float64)
    return {f"p{p}": float(np.percentile(array, p)) for p in points}


def shares(totals: dict[str, float]) -> dict[str, float]:
    """Each key's fraction of the sum (0 when everything is 0)."""
    whole = sum(totals.values())
    return {k: (v / whole if whole > 0 else 0.0) for k, v in totals.items()}


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def outcome_rate(sent_s: Sequence[float], done_s: Sequence[float], paced: bool) -> float:
    """Events per second of a load. A burst: outcomes over the time from the first event sent
    to the last outcome. A paced load: the rate outcomes came at, (N-1) over the first to the
    last outcome; N over that span would count N-1 intervals as N (a rate above the offered)."""
    if not done_s:
        return 0.0
    if paced and len(done_s) > 1:
        return ratio(len(done_s) - 1, max(done_s) - min(done_s))
    return ratio(len(done_s), max(done_s) - min(sent_s))
