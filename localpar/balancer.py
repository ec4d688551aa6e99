"""The load balancer behind LoadBalancedView: tasks wait in the client for an engine with room.

ipyparallel schedules in its controller; here the queue lives in the client and is
drained on submission and whenever the router has applied results.  Each engine
may hold up to `depth` tasks (ipyparallel's ``hwm``): 2 hides the round trip
between two tasks, 1 waits for an idle engine; twice that while tasks are short.
A task queued here has no engine yet (``engine_id == -1``), so aborting it needs
no message to any engine.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Deque, List, Optional, Set, Tuple

from .errors import NoEnginesError, TaskAborted

if TYPE_CHECKING:
    from .handles import TaskRecord
    from .router import Router

Queued = Tuple["TaskRecord", bytes, Optional[List[int]]]  # record, call, allowed engines


SHORT_TASK_SECONDS = 0.001
"""Tasks shorter than this on average are queued twice as deep on each engine: a few
more of them waiting costs under a millisecond of imbalance, and keeps engines
from idling while the client handles the last result."""


class Balancer:
    def __init__(self, router: Router, depth: int = 2) -> None:
        self.depth = depth
        self._router = router
        self._queue: Deque[Queued] = deque()
        self._lock = threading.Lock()

    def submit(self, items: List[Queued]) -> None:
        with self._lock:
            self._queue.extend(items)
        self.schedule()

    def schedule(self) -> None:
        """Hand queued tasks to the least busy allowed engine while one has room."""
        if not self._queue:
            return
        mean = self._router.mean_task_seconds
        depth = 2 * self.depth if mean is not None and mean < SHORT_TASK_SECONDS else self.depth
        with self._lock:
            everyone = [h for h in self._router.engines.values() if h.alive]
            while self._queue:
                record, blob, allowed = self._queue[0]
                least = None
                for h in everyone:  # the first of the least busy
                    if (allowed is None or h.id in allowed) and (least is None or len(h.pending) < len(least.pending)):
                        least = h
                if least is None:
                    self._queue.popleft()
                    self._router.fail(record, NoEnginesError(f"no live engine among targets {allowed}"))
                    continue
                if len(least.pending) >= depth:
                    return
                self._queue.popleft()
                record.engine_id = least.id
                self._router.send(record, blob)

    def queued_msg_ids(self) -> Set[str]:
        with self._lock:
            return {record.msg_id for record, _, _ in self._queue}

    def drop(self, seqs: Set[int]) -> List[TaskRecord]:
        """Abort the queued tasks among `seqs`; returns their records."""
        with self._lock:
            dropped = [item[0] for item in self._queue if item[0].seq in seqs]
            self._queue = deque(item for item in self._queue if item[0].seq not in seqs)
        for record in dropped:
            self._router.fail(record, TaskAborted(record.msg_id), status="aborted")
        return dropped
