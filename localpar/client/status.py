"""``Client.status()``: what each engine does, and what it costs, right now.

Cheap by construction: what the client already knows (pids, pending tasks, tasks
done, restarts) is copied under ``Ledger.lock`` in one short step; resident
memory and CPU are read from ``/proc`` through psutil only when asked, outside
any lock.  Nothing is added to the task path except the time a task ended
(``EngineHandle.idle_since``, set where the ledger completes it).

"Running" means the engine has a task pending: engines run their tasks in order,
so it runs the oldest; "since" is when that task could start (the later of its
submission and the end of the engine's previous task).

CPU % is measured between two calls (`CpuMeter`, guarded by its own lock); the
first call for an engine gives its average since it started.
"""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import psutil

from .memory import format_size

if TYPE_CHECKING:
    from .ledger import Ledger


@dataclass
class EngineStatus:
    id: int
    pid: int
    state: str  # "idle", "running", "starting"
    call: Optional[str]  # the running task's function
    since: Optional[float]  # time.time() it has been in its state since
    queued: int  # tasks pending behind the running one
    rss: int  # resident memory, bytes (0 if unreadable)
    cpu_percent: float
    tasks_done: int
    restarts: int

    def describe(self, now: float) -> str:
        if self.state != "running":
            return self.state
        took = f" for {_duration(now - self.since)}" if self.since is not None else ""
        queued = f" (+{self.queued} queued)" if self.queued else ""
        return f"running {self.call}{took}{queued}"


class Status:
    """Per-engine state; a text table in a REPL, an HTML table in Jupyter."""

    HEADER = ("engine", "pid", "state", "memory", "cpu", "done", "restarts")

    def __init__(
        self, engines: Dict[int, EngineStatus], memory_limit: Optional[int] = None, notes: Sequence[str] = ()
    ) -> None:
        self.engines = engines
        self.memory_limit = memory_limit
        self.notes = list(notes)  # engines not restarted, and why (see ``restarts``)
        self.taken = time.time()

    def rows(self) -> List[Tuple[str, ...]]:
        return [
            (
                str(e.id),
                str(e.pid),
                e.describe(self.taken),
                format_size(e.rss),
                f"{e.cpu_percent:.0f}%",
                str(e.tasks_done),
                str(e.restarts),
            )  # fmt: skip
            for e in self.engines.values()
        ]

    def __str__(self) -> str:
        rows = [self.HEADER, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADER))]
        lines = [
            "  ".join(c.ljust(w) if i == 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
        ]
        if self.memory_limit is not None:
            lines.append(f"memory limit: {format_size(self.memory_limit)} per engine")
        lines.extend(self.notes)
        return "\n".join(line.rstrip() for line in lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in self.HEADER)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows())
        limit = (
            f"<caption>memory limit: {format_size(self.memory_limit)} per engine</caption>"
            if self.memory_limit is not None
            else ""
        )
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
        return f"<table>{limit}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"


class CpuMeter:
    """CPU % of each process between two readings; `_last` is guarded by `_lock`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Dict[int, Tuple[float, float]] = {}  # pid -> (cpu seconds, monotonic time)

    def read(self, pid: int) -> Tuple[int, float]:
        """``(resident bytes, cpu %)`` of `pid`; zeros if it cannot be read."""
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                rss = int(p.memory_info().rss)
                times = p.cpu_times()
                started = p.create_time()
        except psutil.Error:
            return 0, 0.0
        cpu, now = times.user + times.system, time.monotonic()
        with self._lock:
            last = self._last.get(pid)
            self._last[pid] = (cpu, now)
        if last is None:
            elapsed = max(time.time() - started, 1e-6)
            return rss, 100.0 * cpu / elapsed
        return rss, 100.0 * (cpu - last[0]) / max(now - last[1], 1e-6)

    def forget_except(self, pids: List[int]) -> None:
        with self._lock:
            self._last = {pid: v for pid, v in self._last.items() if pid in pids}


def collect(ledger: Ledger, meter: CpuMeter, memory_limit: Optional[int], notes: Sequence[str] = ()) -> Status:
    """A `Status` of the live engines (see the module docstring), with `notes` below."""
    known = []
    with ledger.lock:  # copies only
        for h in sorted(ledger.engines.values(), key=lambda h: h.id):
            if not h.alive:
                continue
            running = ledger.records.get(min(h.pending)) if h.pending else None
            call = running.result.fname if running is not None and running.result is not None else None
            since = max(running.submitted, h.idle_since) if running is not None else h.idle_since
            busy = running is not None
            known.append((h.id, h.pid, h.ready, busy, call, since, len(h.pending), h.completed, h.restarts))
    engines: Dict[int, EngineStatus] = {}
    for engine_id, pid, ready, busy, call, since, pending, done, restarts in known:
        rss, cpu = meter.read(pid)
        state = "running" if busy else ("idle" if ready else "starting")
        queued = max(pending - 1, 0)
        engines[engine_id] = EngineStatus(engine_id, pid, state, call, since, queued, rss, cpu, done, restarts)
    meter.forget_except([e.pid for e in engines.values()])
    return Status(engines, memory_limit, notes)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"
