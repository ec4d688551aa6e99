"""What the workers run; module-level so every tool pickles them by reference.

numpy is imported lazily so that a no-op task costs (and loads) nothing extra.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict

_arrays: Dict[int, Any] = {}


def noop(*args: Any) -> None:
    return None


def getpid() -> int:
    return os.getpid()


def array(nbytes: int) -> Any:
    """A float64 array of `nbytes` filled with ones, made once per worker then reused.

    Reusing it keeps array creation (page faults) out of the transfer being timed.
    """
    arr = _arrays.get(nbytes)
    if arr is None:
        import numpy as np

        arr = _arrays[nbytes] = np.ones(max(1, nbytes // 8))
    return arr


def prepare_array(nbytes: int) -> None:
    """Make and cache the array without sending it back."""
    array(nbytes)


def _publish_counter(publish_data: Any, count: int, gap: float) -> int:
    """Publish ``{'k': k, 't': perf_counter()}`` `count` times, `gap` seconds apart."""
    for k in range(1, count + 1):
        publish_data({"k": k, "t": time.perf_counter()})
        time.sleep(gap)
    return count


def localpar_publish_counter(count: int, gap: float) -> int:
    from localpar.datapub import publish_data

    return _publish_counter(publish_data, count, gap)


def ipp_publish_counter(count: int, gap: float) -> int:
    from ipyparallel.datapub import publish_data

    return _publish_counter(publish_data, count, gap)


def dask_publish_counter(count: int, gap: float, topic: str) -> int:
    from distributed import get_worker

    worker = get_worker()
    for k in range(1, count + 1):
        worker.log_event(topic, {"k": k, "t": time.perf_counter()})
        time.sleep(gap)
    return count


def _publish_array(publish_data: Any, nbytes: int, hold: float) -> float:
    """Publish a big array with its send time; stay alive `hold` s so the reader can see it."""
    arr = array(nbytes)
    t = time.perf_counter()
    publish_data({"a": arr, "t": t})
    time.sleep(hold)
    return t


def localpar_publish_array(nbytes: int, hold: float) -> float:
    from localpar.datapub import publish_data

    return _publish_array(publish_data, nbytes, hold)


def ipp_publish_array(nbytes: int, hold: float) -> float:
    from ipyparallel.datapub import publish_data

    return _publish_array(publish_data, nbytes, hold)


def localpar_publish_many(count: int) -> int:
    """Many small publications in a tight loop: the client must stay bounded."""
    from localpar.datapub import publish_data

    for i in range(count):
        publish_data({"i": i})
    return count
