"""Busy-wait a moment before blocking, when a CPU is to spare.

A process blocked in ``poll`` is woken by the scheduler when a message arrives,
which costs tens of microseconds (more in a VM).  A process still on its CPU,
polling without blocking, sees the message at once.  So a caller in ``get()``
polls for up to ``SPIN_SECONDS`` before blocking, and so does an engine between
two tasks -- but only while the client waits for results (``SpinHint``): a
sequential ``apply_sync`` loop then answers at once, while a client busy
submitting a burst, or running the user's code, keeps its CPU.  Every spin is
bounded, so an idle cluster uses no CPU; with one usable CPU there is no spin,
as the spinner would only delay the process it waits for.  On a machine shared
with others, ``LOCALPAR_SPIN_US=0`` turns it off (or sets another bound, at most
10 ms; a value that is not a number is ignored with a warning).
"""

from __future__ import annotations

import math
import mmap
import os
import select
import struct
import time
import warnings
from typing import Callable, Optional

from ..wire import sharedmem


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _default_spin_seconds() -> float:
    """100 µs; none on one CPU, where the spinner would only delay the process it waits for."""
    return 100e-6 if usable_cpus() > 1 else 0.0


def _spin_seconds() -> float:
    """The default, or ``LOCALPAR_SPIN_US`` microseconds (0 turns spinning off; capped at ``MAX_SPIN_US``).

    A bad value must not make ``import localpar`` fail: it is named in a warning and the
    default is used.  A huge one (``inf``) would burn a core for as long as ``get()`` waits.
    """
    configured = os.environ.get(SPIN_ENV)
    if configured is None:
        return _default_spin_seconds()
    try:
        micros = float(configured)
    except ValueError:
        micros = math.nan
    if math.isnan(micros):
        default = _default_spin_seconds() * 1e6
        warnings.warn(
            f"{SPIN_ENV} must be a number of microseconds, got {configured!r}; using the default ({default:g} µs)",
            RuntimeWarning,
            stacklevel=2,
        )
        return default / 1e6
    if micros > MAX_SPIN_US:
        warnings.warn(
            f"{SPIN_ENV}={configured.strip()} is capped at {MAX_SPIN_US} µs ({MAX_SPIN_US // 1000} ms): "
            "a longer spin only burns a CPU",
            RuntimeWarning,
            stacklevel=2,
        )
        micros = MAX_SPIN_US
    return max(0.0, micros) / 1e6


SPIN_ENV = "LOCALPAR_SPIN_US"
MAX_SPIN_US = 10_000  # 10 ms: past that, blocking costs nothing measurable
SPIN_SECONDS = _spin_seconds()
MAX_SPINNERS = usable_cpus() - 1  # engines spinning at once: one CPU stays for the client
HOT_AFTER_WAIT_SECONDS = 200e-6  # a caller that just got its result soon sends the next call

_DEADLINE = struct.Struct("d")
SPIN_HINT_LABEL = "spin"  # the hint's segment: localpar-<cluster>-<client pid>-spin


CONTENTION_CHECK_SECONDS = 0.05
_LOADAVG = "/proc/loadavg"
_contention = {"checked": -math.inf, "spare": True}  # the latest reading; any thread may refresh it


def cpu_to_spare() -> bool:
    """Whether spinning pays now: fewer tasks are runnable machine-wide than there are CPUs.

    On a machine shared with busy processes a spinner takes the CPU that the
    process it waits for (an engine, the collector) needs, so every wait there
    blocks at once.  The count of runnable tasks comes from /proc/loadavg (this
    reader included), read at most every ``CONTENTION_CHECK_SECONDS``; where it
    cannot be read, spinning is allowed as before.
    """
    now = time.monotonic()
    if now - _contention["checked"] < CONTENTION_CHECK_SECONDS:
        return bool(_contention["spare"])
    try:
        with open(_LOADAVG, "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
        spare = running <= (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        spare = True
    _contention["checked"], _contention["spare"] = now, spare
    return spare


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


def spin_until(predicate: Callable[[], bool], seconds: Optional[float] = None) -> bool:
    """Check `predicate` for up to `seconds` (default ``SPIN_SECONDS``), yielding the CPU, and
    with it the GIL, between checks: another thread of this process can make it true meanwhile
    without waiting for this one.  True as soon as it holds."""
    if seconds is None:
        seconds = SPIN_SECONDS
    if seconds <= 0:
        return predicate()
    deadline = time.perf_counter() + seconds
    while not predicate():
        if time.perf_counter() >= deadline:
            return False
        os.sched_yield()
    return True


class SpinHint:
    """One shared page that tells engines when spinning between tasks pays.

    Bytes 0-7 hold a ``time.monotonic()`` deadline (CLOCK_MONOTONIC: one clock
    for every process): the client raises it to infinity while a caller waits
    for results, and sets it ``HOT_AFTER_WAIT_SECONDS`` ahead when the wait ends.
    Then one byte per engine says whether it spins right now: at most one fewer
    engines than usable CPUs spin at once, so spinners never crowd out the client.
    The page is a 0600 segment of the cluster, removed with it.
    """

    def __init__(self, name: str) -> None:
        fd = os.open(sharedmem.path(name), os.O_RDWR)
        try:
            self._page = mmap.mmap(fd, mmap.PAGESIZE, flags=mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self.name = name
        self.slots = mmap.PAGESIZE - _DEADLINE.size  # engines with an id beyond never spin

    @classmethod
    def create(cls, cluster_id: str) -> SpinHint:
        page = memoryview(bytes(mmap.PAGESIZE))
        return cls(sharedmem.export(cluster_id, page, label=SPIN_HINT_LABEL).name)

    # -- the client's side --------------------------------------------------------------
    def waiting(self) -> None:
        self._set_deadline(math.inf)

    def done_waiting(self) -> None:
        self._set_deadline(time.monotonic() + HOT_AFTER_WAIT_SECONDS)

    def _set_deadline(self, deadline: float) -> None:
        try:
            _DEADLINE.pack_into(self._page, 0, deadline)
        except (TypeError, ValueError):  # closed with its cluster (a wait ending late): nobody spins now
            pass

    def spinning(self, engine_id: int) -> bool:
        """Whether engine `engine_id`'s spin byte is set (it is spinning, or died spinning)."""
        return engine_id < self.slots and self._page[_DEADLINE.size + engine_id] == 1

    def forget(self, engine_id: int) -> None:
        """A dead engine spins no more (it may have died spinning)."""
        if engine_id < self.slots:
            self._page[_DEADLINE.size + engine_id] = 0

    # -- an engine's side -----------------------------------------------------------------
    def hot(self) -> bool:
        """Whether a call is likely to follow soon."""
        return time.monotonic() < _DEADLINE.unpack_from(self._page)[0]

    def spin(self, poller: select.poll, engine_id: int) -> bool:
        """Spin on `poller` if a call is likely soon and a CPU is free; True if something came."""
        slot = _DEADLINE.size + engine_id
        if engine_id >= self.slots or not self.hot():
            return False
        if self._page[_DEADLINE.size :].count(1) >= MAX_SPINNERS:
            return False
        self._page[slot] = 1
        try:
            return spin_until_ready(poller)
        finally:
            self._page[slot] = 0

    def close(self) -> None:
        try:
            self._page.close()
        except BufferError:  # a caller is writing it this instant; the mapping goes with this object
            pass
