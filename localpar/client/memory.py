"""The memory limit: an engine whose resident memory passes it is killed, then replaced.

One small thread per cluster (`MemoryWatch`), started only when the client has a
``memory_limit``, samples the resident size of each live engine every
`INTERVAL` seconds through psutil (one read of ``/proc/<pid>/statm`` each), off
the task path: submitting and completing tasks never wait for it.  An engine
over the limit gets its ``death_reason`` (the limit and the size reached), then
SIGKILL; the collector sees the death like any other, fails the engine's tasks
with an ``EngineError`` carrying that reason, and the client replaces the engine
with the same id (see ``resources.ClusterResources.after_death``).

A limit below an idle engine's size would kill every engine as it starts, and its
replacement too, forever: ``Client()`` refuses such a limit up front (a ValueError
naming the size of its first engine, idle), and an engine over the limit before
it ran any task (one started later, bigger) is killed with a RuntimeWarning and
not replaced.

What counts: the engine's own memory, its private pages (USS) outside ``/dev/shm``.  Not
the pages it maps from ``/dev/shm`` (a zero-copy argument or result is one copy for the
whole cluster), nor the pages a forked engine still shares copy-on-write with the client
(a big array made before ``Client()``): counted in each engine, they would kill engines that
allocate nothing.  The cheap RSS is read at every sample; only when it passes the limit is
``/proc/<pid>/smaps`` read for the engine's own size, which then decides.

Its state is its own: the thread alone touches `_processes` (`measure`, by
``Client()`` before the thread starts, excepted); `stop()` (from ``close``) sets
`_stopped` and joins it.
"""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
from typing import TYPE_CHECKING, Dict, Optional, Union

import psutil

if TYPE_CHECKING:
    from .ledger import Ledger

INTERVAL = 0.05  # seconds between samples: what an engine can allocate in that time is the overshoot

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}  # fmt: skip


def parse_size(size: Union[int, str]) -> int:
    """Bytes from an int or a string like ``"2 GiB"``, ``"500MB"``, ``"1.5g"``; a ValueError otherwise."""
    if isinstance(size, bool):
        raise TypeError(f"memory_limit must be bytes (an int) or a string like '2 GiB', got {size!r}")
    if isinstance(size, int):
        value = size
    elif isinstance(size, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", size)
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _UNITS:
            raise ValueError(f"memory_limit: cannot read {size!r} as a size; use bytes or e.g. '2 GiB', '500 MB'")
        value = int(float(match.group(1)) * _UNITS[unit])
    else:
        raise TypeError(f"memory_limit must be bytes (an int) or a string like '2 GiB', got {type(size).__name__}")
    if value <= 0:
        raise ValueError(f"memory_limit must be positive, got {size!r}")
    return value


def format_size(n: float) -> str:
    """``123.4 MiB``: sizes as people read them."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class MemoryWatch:
    """Kills engines of `ledger` whose resident memory passes `limit` bytes."""

    def __init__(self, ledger: Ledger, limit: int, cluster_id: str) -> None:
        self.ledger = ledger
        self.limit = limit
        self._processes: Dict[int, psutil.Process] = {}  # by pid
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"localpar-memory-{cluster_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self.thread.ident is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(INTERVAL):  # a pacing sleep that also ends at once on stop()
            self.sample()

    def sample(self) -> None:
        live = {h.pid: h for h in self.ledger.live_handles()}
        for pid in list(self._processes):
            if pid not in live:
                del self._processes[pid]
        for pid, handle in live.items():
            rss = self._rss(pid)
            if rss is not None and rss > self.limit:
                rss = own_memory(pid, rss)  # rare: only over the limit
            if rss is not None and rss > self.limit and handle.death_reason is None:
                reason = (
                    f"localpar killed it: it passed its memory limit of {format_size(self.limit)} "
                    f"({self.limit} bytes); its resident memory reached {format_size(rss)} ({rss} bytes)"
                )
                with self.ledger.lock:
                    idle = not handle.completed and not handle.pending
                if idle:  # its replacement would be too: no endless kill and restart
                    reason += " before running any task: the limit is below an idle engine's size; not replaced"
                    handle.retired = True
                    warnings.warn(
                        f"localpar: engine {handle.id} was killed before running any task and is not replaced: "
                        f"memory_limit {format_size(self.limit)} is below the size of an idle engine "
                        f"({format_size(rss)}); give a higher memory_limit",
                        RuntimeWarning,
                        stacklevel=1,
                    )
                handle.death_reason = reason
                with contextlib.suppress(ProcessLookupError):
                    handle.process.kill()

    def refuse_below_idle_size(self, given: Union[int, str]) -> None:
        """Raise a ValueError if the limit is below the size of the first engine once it is up
        (a bounded wait): every engine would be killed as it starts, and replaced, forever."""
        first = self.ledger.engines[min(self.ledger.engines)]
        self.ledger.wait_until(lambda: first.ready or not first.alive, 30)
        size = self.measure(first.pid) if first.alive else None
        if size is not None and size >= self.limit:
            raise ValueError(
                f"memory_limit={given!r} ({format_size(self.limit)}) is below the size of an idle engine "
                f"({format_size(size)}): every engine would be killed as it starts; give a higher limit"
            )

    def measure(self, pid: int) -> Optional[int]:
        """The size of engine `pid` as the watch counts it (None if it is gone)."""
        return self._rss(pid)

    def _rss(self, pid: int) -> Optional[int]:
        try:
            process = self._processes.get(pid)
            if process is None:
                process = self._processes[pid] = psutil.Process(pid)
            return int(process.memory_info().rss)
        except psutil.Error:
            return None


def own_memory(pid: int, rss: int) -> int:
    """Bytes of `pid`'s private resident pages outside ``/dev/shm`` mappings (its USS
    without shared memory); `rss` if ``/proc/<pid>/smaps`` cannot be read."""
    total, in_shm = 0, False
    try:
        with open(f"/proc/{pid}/smaps", "rb") as f:
            for line in f:
                head = line.split(None, 1)[0]
                if not head.endswith(b":"):  # a mapping's first line: range, perms, offset, dev, inode, path
                    fields = line.split()
                    in_shm = len(fields) >= 6 and fields[5].startswith(b"/dev/shm/")
                elif not in_shm and head in (b"Private_Clean:", b"Private_Dirty:"):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return rss
    return total
