"""Curves: how startup and throughput grow with engines, and round trip with payload size."""

from __future__ import annotations

import gc
from functools import partial
from typing import Any, Dict, List, Sequence, Type

from .limits import memcpy_seconds
from .peers import Peer
from .stats import median, timed

KB = 1 << 10
PAYLOADS = tuple(KB * 4**i for i in range(9))  # 1 KB .. 64 MB


def engines_sweep(
    cls: Type[Peer], engines: Sequence[int], starts: int, tasks: int, log: Any = print
) -> List[Dict[str, Any]]:
    """Startup (median of `starts`) and submit-all throughput (median of 3 runs) for each engine count."""
    rows = []
    for n in engines:
        boots = []
        peer = cls()
        for i in range(starts):
            peer = cls()
            boots.append(timed(partial(peer.start, n)))
            if i < starts - 1:
                peer.close()
        try:
            peer.submit_many(min(200, tasks))
            rate = tasks / median([timed(partial(peer.submit_many, tasks)) for _ in range(3)])
        finally:
            peer.close()
        rows.append({"engines": n, "startup": median(boots), "submit_rate": rate})
        log(f"  {cls.name} n={n}: startup {median(boots) * 1e3:.1f} ms, {rate:.0f} tasks/s")
    return rows


def payload_sweep(cls: Type[Peer], sizes: Sequence[int], workers: int, reps: int, log: Any = print) -> Dict[int, float]:
    """Median round trip of returning an array of each size (seconds)."""
    peer = cls()
    peer.start(workers)
    out: Dict[int, float] = {}
    try:
        for nbytes in sizes:
            peer.array(nbytes)
            n = reps if nbytes < (16 << 20) else max(2, reps // 3)
            times = []
            for _ in range(n):
                gc.collect()  # the previous array is gone, as in measure._array_seconds
                peer.noop()
                times.append(timed(partial(peer.array, nbytes)))
            out[nbytes] = median(times)
    finally:
        peer.close()
    log(f"  {cls.name} payloads: " + ", ".join(f"{s // KB} KB {t * 1e3:.2f} ms" for s, t in out.items()))
    return out


def memcpy_sweep(sizes: Sequence[int]) -> Dict[int, float]:
    return {nbytes: memcpy_seconds(nbytes) for nbytes in sizes}
