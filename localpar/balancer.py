"""The load balancer behind LoadBalancedView: tasks wait in the client for an engine with room.

ipyparallel schedules in its controller; here the queue lives in the client and is
drained on submission and whenever the collector has seen a task end or an engine
come or go.  Each engine may hold up to `depth` tasks (ipyparallel's ``hwm``): 2
hides the round trip between two tasks, 1 waits for an idle engine; more while
tasks are short (see `QUEUED_WORK_SECONDS`).  A task queued here has no engine yet (``engine_id == -1``),
so aborting it needs no message to any engine.

Ownership: `_lock` guards the queue and each queued AsyncResult's start: a call
is marked running (``set_running_or_notify_cancel``) when its first task leaves
the queue, so ``cancel()`` succeeds exactly while none has.  Tasks are assigned
and registered in the ledger under `_lock`, and written to their engines after
it is released, like every failure, so that no user callback runs under it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Deque, List, Optional, Set, Tuple

from . import chaos
from .errors import NoEnginesError, RemoteError, TaskAborted

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .handles import EngineHandle, TaskRecord
    from .ledger import Ledger

Queued = Tuple["AsyncResult", "TaskRecord", bytes, Optional[List[int]]]  # call, record, bytes, allowed engines


QUEUED_WORK_SECONDS = 0.002
"""Short tasks are queued on an engine until it holds about this much work (by the
moving average of run times), up to `MAX_DEPTH`.  The collector that hands out the
next tasks may wait a few milliseconds for the GIL while the caller submits; work
queued in the engine keeps it busy meanwhile.  The cost: should one task run far
longer than the average, up to `MAX_DEPTH` tasks queued behind it on its engine
wait for it, even if another engine is free (a sent task is not taken back)."""

MAX_DEPTH = 32  # bounds the tasks stuck behind one that runs far longer than the average


class Balancer:
    def __init__(self, ledger: Ledger, depth: int = 2) -> None:
        self.depth = depth
        self._ledger = ledger
        self._queue: Deque[Queued] = deque()
        self._lock = threading.Lock()

    def submit(self, ar: AsyncResult, items: List[Tuple[TaskRecord, bytes, Optional[List[int]]]]) -> None:
        with self._lock:
            self._queue.extend((ar, record, call, allowed) for record, call, allowed in items)
        self.schedule()

    def schedule(self) -> None:
        """Hand queued tasks to the least busy allowed engine while one has room."""
        if not self._queue:
            return
        depth = self.effective_depth()
        to_send: List[Tuple[EngineHandle, TaskRecord, bytes]] = []
        to_fail: List[Tuple[TaskRecord, RemoteError, str]] = []
        with self._lock:
            if chaos.ENABLED:
                chaos.pause()
            load = self._ledger.load()
            while self._queue:
                ar, record, call, allowed = self._queue[0]
                least = min((h for h in load if allowed is None or h.id in allowed), key=load.__getitem__, default=None)
                if least is None:
                    self._queue.popleft()
                    to_fail.append((record, NoEnginesError(f"no live engine among targets {allowed}"), "error"))
                    continue
                if load[least] >= depth:
                    break
                self._queue.popleft()
                if not ar._start():  # cancelled while queued: its other tasks go too
                    to_fail += [(r, TaskAborted(r.msg_id), "aborted") for r in self._remove(ar)]
                    to_fail.append((record, TaskAborted(record.msg_id), "aborted"))
                    continue
                record.engine_id = least.id
                if self._ledger.register(record):
                    load[least] += 1
                    to_send.append((least, record, call))
                else:  # it died meanwhile: try the next one
                    record.engine_id = -1
                    self._queue.appendleft((ar, record, call, allowed))
                    del load[least]
        for handle, record, call in to_send:
            handle.send_task(record.seq, call)
        for record, error, status in to_fail:
            self._ledger.fail(record, error, status)

    def effective_depth(self) -> int:
        """Tasks to queue per engine: `depth`, or more while tasks are short."""
        mean = self._ledger.mean_task_seconds
        if mean is None or mean * self.depth >= QUEUED_WORK_SECONDS:
            return self.depth
        return max(self.depth, min(MAX_DEPTH, int(QUEUED_WORK_SECONDS / max(mean, 1e-6))))

    def cancel(self, ar: AsyncResult) -> bool:
        """Cancel `ar` if none of its tasks has left the queue; its queued tasks are dropped."""
        with self._lock:
            cancelled, by_me = ar._cancel_if_new()
            if not by_me:
                return cancelled
            dropped = self._remove(ar)
        ar._notify_cancelled()
        for record in dropped:
            self._ledger.fail(record, TaskAborted(record.msg_id), status="aborted")
        return True

    def queued_msg_ids(self) -> Set[str]:
        with self._lock:
            return {record.msg_id for _, record, _, _ in self._queue}

    def drop(self, seqs: Set[int]) -> List[TaskRecord]:
        """Abort the queued tasks among `seqs`; returns their records."""
        with self._lock:
            dropped = [item[1] for item in self._queue if item[1].seq in seqs]
            self._queue = deque(item for item in self._queue if item[1].seq not in seqs)
        for record in dropped:
            self._ledger.fail(record, TaskAborted(record.msg_id), status="aborted")
        return dropped

    def _remove(self, ar: AsyncResult) -> List[TaskRecord]:
        """Take `ar`'s tasks out of the queue (the lock is held)."""
        mine = [item[1] for item in self._queue if item[0] is ar]
        if mine:
            self._queue = deque(item for item in self._queue if item[0] is not ar)
        return mine
