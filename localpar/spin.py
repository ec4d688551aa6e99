"""Busy-wait a moment before blocking, where a CPU is to spare.

A process blocked in ``poll`` is woken by the scheduler when a message arrives,
which costs tens of microseconds (more in a VM).  A process still on its CPU,
polling without blocking, sees the message at once.  So a waiter that expects an
answer soon -- an engine between two tasks, a caller in ``get()`` -- polls for up
to ``SPIN_SECONDS`` first, then blocks.  The spin is bounded, so an idle cluster
uses no CPU; on a single usable CPU it is off, as the spinner would only delay
the process it waits for.
"""

from __future__ import annotations

import os
import select
import time
from typing import Optional


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


SPIN_SECONDS = 100e-6 if _usable_cpus() > 1 else 0.0


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


class GapPredictor:
    """Spin only while messages have been following each other closely.

    Tracks a moving average of the gaps between waiting and being served; a spin
    that would most likely time out (the gaps are longer than ``SPIN_SECONDS``)
    is skipped.  So an engine fed call after call by a waiting client spins and
    answers at once, while one whose client is busy submitting leaves it the CPU.
    """

    def __init__(self) -> None:
        self.gap = 0.0

    def wait(self, poller: select.poll) -> None:
        """Block until `poller` has something ready, spinning first if that pays."""
        start = time.perf_counter()
        limit = SPIN_SECONDS
        if not (self.gap <= limit / 2 and spin_until_ready(poller, limit)):
            poller.poll()
        self.gap += (time.perf_counter() - start - self.gap) / 4
