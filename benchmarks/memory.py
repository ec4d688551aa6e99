"""Memory: idle workers' USS, and the client's growth while a task publishes a lot.

USS (unique set size) counts the pages only that process holds: what killing it
would free.  Pages a forked worker still shares with its parent are not in it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List

import psutil


def idle_uss(pids: List[int]) -> List[int]:
    """USS in bytes of each process."""
    return [psutil.Process(pid).memory_full_info().uss for pid in pids]


def client_growth_under_publishing(count: int, workers: int = 2, sample_every: float = 0.25) -> Dict[str, Any]:
    """localpar: one task publishes ``{'i': i}`` `count` times; the client's RSS/USS over time.

    Bounded means the client keeps only the merged state, not the history.
    """
    from localpar import Client

    from .tasks import localpar_publish_many

    me = psutil.Process()
    samples: List[tuple] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            info = me.memory_full_info()
            samples.append((time.perf_counter(), info.rss, info.uss))
            stop.wait(sample_every)

    with Client(workers) as c:
        c[0].apply_sync(localpar_publish_many, 1000)  # warm: code paths, caches
        before = me.memory_full_info()
        thread = threading.Thread(target=sampler, daemon=True)
        t0 = time.perf_counter()
        thread.start()
        ar = c[0].apply_async(localpar_publish_many, count)
        last = ar.get(timeout=3600)
        elapsed = time.perf_counter() - t0
        stop.set()
        thread.join()
        final_data = ar.data
        assert isinstance(final_data, dict)
        after = me.memory_full_info()
    peak_rss = max(s[1] for s in samples) if samples else after.rss
    peak_uss = max(s[2] for s in samples) if samples else after.uss
    return {
        "count": count,
        "seconds": elapsed,
        "rate": count / elapsed,
        "result": last,
        "final_i": final_data.get("i"),
        "rss_before": before.rss,
        "uss_before": before.uss,
        "rss_growth": after.rss - before.rss,
        "uss_growth": after.uss - before.uss,
        "peak_rss_growth": peak_rss - before.rss,
        "peak_uss_growth": peak_uss - before.uss,
        "samples": [(t - t0, rss - before.rss, uss - before.uss) for t, rss, uss in samples],
    }
