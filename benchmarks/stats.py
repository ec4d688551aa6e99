"""Timing helpers.

``time.perf_counter`` is CLOCK_MONOTONIC on Linux: one clock for the whole
system, so a timestamp taken in a worker can be compared with one taken here.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List, Mapping, Sequence, TypeVar

K = TypeVar("K")

clock = time.perf_counter


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on the sorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[rank]


def summary(values: Sequence[float]) -> Dict[str, float]:
    """p50/p99/min/n of a list of durations (seconds)."""
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "min": min(values), "n": len(values)}


def timed(f: Callable[[], object]) -> float:
    """Seconds one call of `f` takes."""
    t0 = clock()
    f()
    return clock() - t0


def repeat(f: Callable[[], object], times: int, warmup: int = 0) -> List[float]:
    """Durations of `times` calls of `f`, after `warmup` untimed ones."""
    for _ in range(warmup):
        f()
    return [timed(f) for _ in range(times)]


def interleaved(fs: Mapping[K, Callable[[], object]], times: int, warmup: int = 0) -> Dict[K, List[float]]:
    """Durations of `times` calls of each of `fs`, taken in turn (one of each, then again):
    the machine's drift between moments then weighs on every one alike."""
    for _ in range(warmup):
        for f in fs.values():
            f()
    out: Dict[K, List[float]] = {name: [] for name in fs}
    for _ in range(times):
        for name, f in fs.items():
            out[name].append(timed(f))
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def mb_per_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds > 0 else float("inf")
