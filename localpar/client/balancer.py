"""The load balancer behind LoadBalancedView: tasks wait in the client for an engine with room.

ipyparallel schedules in its controller; here the queue lives in the client and is
drained on submission and whenever the collector has seen a task end or an engine
come or go.  Each engine may hold up to `depth` tasks (ipyparallel's ``hwm``): 2
hides the round trip between two tasks, 1 waits for an idle engine; more while
tasks are short (see `QUEUED_WORK_SECONDS`).  A deep queue is refilled once it
is half empty (`refill_level`), many tasks in one write.  A task queued here has no engine yet (``engine_id == -1``),
so aborting it needs no message to any engine.

An engine may hold a short task behind one that runs long while another engine
idles.  So when an engine is idle and nothing is queued here, the balancer asks
each engine holding two or more tasks to hand back those past its oldest
(``messages.Reclaim``).  The engine answers at once, even mid-task, with the
ones it has not started; they return to the front of the queue under new
numbers (the engine skips the old ones), so no task runs twice or is lost.

Ownership: `_lock` guards the queue, `_reclaiming`, each record's `call`,
`allowed` and `abort_requested`, and each queued AsyncResult's start: a call
is marked running (``set_running_or_notify_cancel``) when its first task leaves
the queue, so ``cancel()`` succeeds exactly while none has.  Tasks are assigned
and registered in the ledger under `_lock`, and written to their engines after
it is released, like every failure, so that no user callback runs under it.
`schedule` first looks, without the locks, whether the queue is empty and no
balanced task is on an engine (the ledger's `balanced`), and if so returns: the
queue grows, and `balanced` too, only in a thread that schedules afterwards
itself, so a stale "nothing" is never the last look.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Deque, Dict, List, Optional, Set, Tuple

from .. import chaos
from ..errors import ClientClosedError, KernelError, NoEnginesError, TaskAborted
from ..wire.messages import Reclaim

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .handles import EngineHandle, TaskRecord
    from .ledger import Ledger

Queued = Tuple["AsyncResult", "TaskRecord", bytes, Optional[List[int]]]  # call, record, bytes, allowed engines


QUEUED_WORK_SECONDS = 0.002
"""Short tasks are queued on an engine until it holds about this much work (by the
moving average of run times), up to `MAX_DEPTH`.  The collector that hands out the
next tasks may wait a few milliseconds for the GIL while the caller submits; work
queued in the engine keeps it busy meanwhile.  Should one task run far longer than
the average, the tasks queued behind it are handed back to an idle engine (see
above)."""

MAX_DEPTH = 32


def refill_level(depth: int) -> int:
    """An engine is given tasks once it holds at most this many, then up to `depth`: half
    of a deep queue, so that each write to it carries many tasks (a write that wakes an
    idle engine costs more than a small task), while what it still holds keeps it busy."""
    return depth // 2 if depth >= 4 else depth - 1


class Balancer:
    """The queue of load-balanced tasks waiting in the client for an engine with room, and the
    policy that hands them out (at most `depth` per engine) and takes them back from a busy one."""

    def __init__(self, ledger: Ledger, depth: int = 2) -> None:
        self.depth = depth
        self._ledger = ledger
        self._queue: Deque[Queued] = deque()
        self._reclaiming: Set[EngineHandle] = set()  # asked to hand tasks back, answer pending
        self._lock = threading.Lock()

    def submit(self, ar: AsyncResult, items: List[Tuple[TaskRecord, bytes, Optional[List[int]]]]) -> None:
        """Queue `ar`'s tasks, and hand them out if the queue was empty.  Behind other tasks
        they wait for room, which only the collector sees (a task ends, an engine comes or
        goes), and it schedules then: a burst of submissions costs an append each."""
        with self._lock:
            was_empty = not self._queue
            self._queue.extend((ar, record, call, allowed) for record, call, allowed in items)
        if was_empty:
            self.schedule(fill=True)

    def schedule(self, fill: bool = False) -> None:
        """Hand queued tasks to the least busy allowed engine while one has room; with none
        queued and an engine idle, ask busy engines for tasks back.  Room is `depth` with
        `fill` (a submission to an empty queue), else an engine is refilled once down to
        `refill_level`."""
        if not self._queue and not self._ledger.balanced:
            return  # nothing to hand out or take back (see the module docstring)
        depth = self.effective_depth()
        to_send: List[Tuple[EngineHandle, TaskRecord, bytes]] = []
        to_fail: List[Tuple[TaskRecord, KernelError, str]] = []
        to_reclaim: List[Tuple[EngineHandle, List[int]]] = []
        with self._lock:
            if chaos.ENABLED:
                chaos.pause()
            load = self._ledger.load()
            low = depth - 1 if fill else refill_level(depth)
            refilled = {h for h, n in load.items() if n <= low}  # these take tasks, up to depth
            while self._queue:
                ar, record, call, allowed = self._queue[0]
                least = min((h for h in load if allowed is None or h.id in allowed), key=load.__getitem__, default=None)
                if least is None:
                    self._queue.popleft()
                    to_fail.append((record, NoEnginesError(f"no live engine among targets {allowed}"), "error"))
                    continue
                if least not in refilled or load[least] >= depth:
                    break
                self._queue.popleft()
                if not ar.mark_sent():  # cancelled while queued: its other tasks go too
                    to_fail += [(r, TaskAborted(r.msg_id), "aborted") for r in self._remove(ar)]
                    to_fail.append((record, TaskAborted(record.msg_id), "aborted"))
                    continue
                record.engine_id = least.id
                record.call, record.allowed = call, allowed
                if self._ledger.register(record):
                    load[least] += 1
                    to_send.append((least, record, call))
                else:  # it died meanwhile: try the next one
                    record.engine_id = -1
                    self._queue.appendleft((ar, record, call, allowed))
                    del load[least]
            if not self._queue:
                to_reclaim = self._to_reclaim(load)
        by_engine: Dict[EngineHandle, List[Tuple[int, bytes]]] = {}
        for handle, record, call in to_send:
            by_engine.setdefault(handle, []).append((record.seq, call))
        for handle, tasks in by_engine.items():
            handle.send_tasks(tasks)
        for handle, seqs in to_reclaim:
            handle.send_control(Reclaim(seqs))
        for record, error, status in to_fail:
            self._ledger.fail(record, error, status)

    def effective_depth(self) -> int:
        """Tasks to queue per engine: `depth`, or more while tasks are short."""
        mean = self._ledger.mean_task_seconds
        if mean is None or mean * self.depth >= QUEUED_WORK_SECONDS:
            return self.depth
        return max(self.depth, min(MAX_DEPTH, int(QUEUED_WORK_SECONDS / max(mean, 1e-6))))

    def _to_reclaim(self, load: Dict[EngineHandle, int]) -> List[Tuple[EngineHandle, List[int]]]:
        """Tasks to ask back for the idle engines, by engine; `_lock` is held."""
        self._reclaiming.intersection_update(load)  # a dead engine answers nothing
        idle = [h.id for h, n in load.items() if n == 0]
        if not idle:
            return []
        asks = []
        for handle, n in load.items():
            if n >= 2 and handle not in self._reclaiming:
                seqs = self._ledger.reclaimable(handle, idle)
                if seqs:
                    self._reclaiming.add(handle)
                    asks.append((handle, seqs))
        return asks

    def requeue(self, handle: EngineHandle, seqs: List[int]) -> None:
        """`handle` handed back these tasks unstarted: to the front of the queue, renumbered."""
        records = self._ledger.reclaimed(handle, seqs)
        aborted = []
        with self._lock:
            self._reclaiming.discard(handle)
            for record in reversed(records):
                if record.abort_requested or record.result is None:
                    aborted.append(record)
                    continue
                record.seq = self._ledger.next_seq()  # the engine skips the old number
                self._queue.appendleft((record.result, record, record.call or b"", record.allowed))
        for record in aborted:
            self._ledger.fail(record, TaskAborted(record.msg_id), status="aborted")
        self.schedule()

    def cancel(self, ar: AsyncResult) -> bool:
        """Cancel `ar` if none of its tasks has left the queue; its queued tasks are dropped."""
        with self._lock:
            cancelled, by_me = ar.cancel_if_unsent()
            if not by_me:
                return cancelled
            dropped = self._remove(ar)
        ar.notify_cancelled()
        for record in dropped:
            self._ledger.fail(record, TaskAborted(record.msg_id), status="aborted")
        return True

    def close(self, reason: str) -> None:
        """The client closed: every queued task fails with ClientClosedError."""
        with self._lock:
            dropped = [item[1] for item in self._queue]
            self._queue.clear()
        for record in dropped:
            self._ledger.fail(record, ClientClosedError(f"{reason} while task {record.msg_id} was queued"))

    def queued_records(self) -> List[TaskRecord]:
        with self._lock:
            return [record for _, record, _, _ in self._queue]

    def queued_msg_ids(self) -> Set[str]:
        with self._lock:
            return {record.msg_id for _, record, _, _ in self._queue}

    def drop(self, records: List[TaskRecord]) -> List[TaskRecord]:
        """Abort those of `records` still queued; the others are marked, so that one an
        engine hands back is not queued again.  Returns the dropped ones."""
        with self._lock:
            for record in records:
                record.abort_requested = True
            dropped = [item[1] for item in self._queue if item[1].abort_requested]
            if dropped:
                self._queue = deque(item for item in self._queue if not item[1].abort_requested)
        for record in dropped:
            self._ledger.fail(record, TaskAborted(record.msg_id), status="aborted")
        return dropped

    def _remove(self, ar: AsyncResult) -> List[TaskRecord]:
        """Take `ar`'s tasks out of the queue (the lock is held)."""
        mine = [item[1] for item in self._queue if item[0] is ar]
        if mine:
            self._queue = deque(item for item in self._queue if item[0] is not ar)
        return mine
