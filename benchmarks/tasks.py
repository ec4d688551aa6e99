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


_bytes: Dict[int, bytes] = {}


def payload_bytes(nbytes: int) -> bytes:
    """`nbytes` of ``bytes`` ending in 0x01, made once per worker then reused (as `array`)."""
    data = _bytes.get(nbytes)
    if data is None:
        data = _bytes[nbytes] = bytes(nbytes - 1) + b"\x01"
    return data


def payload(nbytes: int, kind: str) -> Any:
    """A cached float64 array (`kind` "array") or ``bytes`` ("bytes") of `nbytes`."""
    return payload_bytes(nbytes) if kind == "bytes" else array(nbytes)


def prepare_payload(nbytes: int, kind: str = "array") -> None:
    """Make and cache the payload without sending it back."""
    payload(nbytes, kind)


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


def _publish_array(publish_data: Any, nbytes: int, hold: float, kind: str) -> float:
    """Publish a big array (or bytes) with its send time; stay alive `hold` s so the reader can see it."""
    arr = payload(nbytes, kind)
    t = time.perf_counter()
    publish_data({"a": arr, "t": t})
    time.sleep(hold)
    return t


def localpar_publish_array(nbytes: int, hold: float, kind: str = "array") -> float:
    from localpar.datapub import publish_data

    return _publish_array(publish_data, nbytes, hold, kind)


def ipp_publish_array(nbytes: int, hold: float, kind: str = "array") -> float:
    from ipyparallel.datapub import publish_data

    return _publish_array(publish_data, nbytes, hold, kind)


def localpar_publish_many(count: int) -> int:
    """Many small publications in a tight loop: the client must stay bounded."""
    from localpar.datapub import publish_data

    for i in range(count):
        publish_data({"i": i})
    return count
