"""Busy-wait a moment before blocking, when a CPU is to spare.

A process blocked in ``poll`` is woken by the scheduler when a message arrives,
which costs tens of microseconds (more in a VM).  A process still on its CPU,
polling without blocking, sees the message at once.  So a caller in ``get()``
polls for up to ``SPIN_SECONDS`` before blocking, and so does an engine between
two tasks -- but only while the client waits for results (``SpinHint``): a
sequential ``apply_sync`` loop then answers at once, while a client busy
submitting a burst, or running the user's code, keeps its CPU.  Every spin is
bounded, so an idle cluster uses no CPU; with one usable CPU there is no spin,
as the spinner would only delay the process it waits for.
"""

from __future__ import annotations

import math
import mmap
import os
import select
import struct
import time
from typing import Optional

from . import sharedmem


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


SPIN_SECONDS = 100e-6 if _usable_cpus() > 1 else 0.0
HOT_AFTER_WAIT_SECONDS = 200e-6  # a caller that just got its result soon sends the next call

_DEADLINE = struct.Struct("d")
SPIN_HINT_LABEL = "spin"  # the hint's segment: localpar-<cluster>-<client pid>-spin


def spin_until_ready(poller: select.poll, seconds: Optional[float] = None) -> bool:
    """Poll without blocking for up to `seconds` (default ``SPIN_SECONDS``); True as soon as something is ready."""
    if seconds is None:
        seconds = SPIN_SECONDS
    if seconds <= 0:
        return bool(poller.poll(0))
    deadline = time.perf_counter() + seconds
    while True:
        if poller.poll(0):
            return True
        if time.perf_counter() >= deadline:
            return False


class SpinHint:
    """A ``time.monotonic()`` deadline in one shared page: until then engines spin between tasks.

    The client raises it to infinity while a caller waits for results and sets it
    ``HOT_AFTER_WAIT_SECONDS`` ahead when the wait ends.  The clock is
    CLOCK_MONOTONIC, the same in every process.  The page is a 0600 segment of
    the cluster, removed with it.
    """

    def __init__(self, name: str, writable: bool) -> None:
        fd = os.open(sharedmem.path(name), os.O_RDWR if writable else os.O_RDONLY)
        try:
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            self._page = mmap.mmap(fd, _DEADLINE.size, flags=mmap.MAP_SHARED, prot=prot)
        finally:
            os.close(fd)
        self.name = name

    @classmethod
    def create(cls, cluster_id: str) -> SpinHint:
        name = sharedmem.export(cluster_id, memoryview(_DEADLINE.pack(0.0)), label=SPIN_HINT_LABEL).name
        return cls(name, writable=True)

    @classmethod
    def attach(cls, name: str) -> SpinHint:
        return cls(name, writable=False)

    def waiting(self) -> None:
        _DEADLINE.pack_into(self._page, 0, math.inf)

    def done_waiting(self) -> None:
        _DEADLINE.pack_into(self._page, 0, time.monotonic() + HOT_AFTER_WAIT_SECONDS)

    def hot(self) -> bool:
        """Whether a call is likely to follow soon."""
        return time.monotonic() < _DEADLINE.unpack_from(self._page)[0]

    def close(self) -> None:
        self._page.close()
