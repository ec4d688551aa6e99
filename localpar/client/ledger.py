"""The ledger: the engines, the tasks pending on each, and the one place a task completes.

Ownership (who may touch what), and where a read without the lock is safe:

- ``Ledger.lock`` guards every *write* of `engines`, `records`, `balanced`, `closed`,
  `replacing`, `version` and `waiters`, and of each handle's `pending`, `alive`, `ready`, `completed` and
  `idle_since`; and every *compound read* of them (iterating `engines` or `records`, counting
  `pending`, reading fields that must agree).  It is never held while blocking, nor while user
  code (a callback) runs.
- Reads of one value without the lock, each safe for the reason given (one dict lookup or one
  attribute read is atomic under the GIL):
  ``engines.get(i)`` / ``engines[i]`` by the client's own calls (a handle, once in `engines`,
  is only ever replaced whole, by a newer one for the same id; the caller acts on the handle it
  got, and sending to a dead one is refused by `register` under the lock);
  ``replacing`` by the client, to decide whether to wait for a replacement (`wait_for_replacements`
  re-reads it under the lock);
  ``records.get(seq)`` by the collector (a record another thread completed meanwhile is
  `done`, and `complete` does nothing twice); ``handle.alive`` by the collector, which is its
  only writer while the collector runs (`engine_died`; the teardown writes it after the
  collector has stopped), and by the client to decide what to wait for (`wait_until`
  re-reads it under its condition).
- A task completes in `complete`: under the lock the record is marked done and counted off its
  AsyncResult; outside the lock the results `split()` made of it alone finish, then the last
  record finishes the Future (``set_result`` wakes its
  waiters and runs its callbacks).  The collector thread completes every record that reached an
  engine; a record that never did (dropped by the balancer, refused by `register`, failed at
  close) is completed by the thread that dropped it.
- A load-balanced task that failed may not complete yet: `complete` first offers it to
  `on_error` (the balancer's ``retry``), which may take it back (`retract`) to run it again;
  and a record another task waits for (``watched``) is handed to `on_watched_done` once it
  has completed (both outside the lock; see ``dependencies``).
- Waiting for anything that is not a Future (a data change, a record, a death)
  goes through `wait_until`: its predicate is checked under `_changed`, which
  the collector notifies after applying each batch, so a wake cannot fall
  between the check and the wait.
- The `doorbell` wakes the collector when what it must watch has changed
  (`version`), when segments are released, or when the client closes.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Set, Tuple

from .. import chaos
from ..errors import ClientClosedError, EngineError, KernelError
from ..processes import spin
from ..wire.framing import Bell

if TYPE_CHECKING:
    from ..processes.spin import SpinHint
    from .asyncresult import AsyncResult
    from .handles import EngineHandle, TaskRecord
    from .taskdb import TaskDB


REPLACEMENT_WAIT = 30.0
"""Seconds a call on a dead engine's id waits for its replacement (``restart_dead``,
``memory_limit``) before it fails: a call made right after the EngineError runs on the new engine."""

CANCEL_WAIT = 10.0
"""Seconds ``cancel()`` waits for engines to answer whether a task had started: the
engine's control thread answers at once, unless a task holds the engine's GIL."""


class Ledger:
    """The engines of one cluster and the tasks pending on each, under one lock (see above)."""

    def __init__(self, spin_hint: SpinHint) -> None:
        self.lock = threading.Lock()
        self.engines: Dict[int, EngineHandle] = {}
        self.records: Dict[int, TaskRecord] = {}
        self.balanced = 0  # of `records`, those the load balancer placed (their `call` is kept)
        self.closed = False
        self.replacing: Set[int] = set()  # ids of dead engines whose replacement is on its way
        self.version = 0  # bumped whenever the collector must watch other descriptors
        self.waiters = 0  # callers waiting for a result: engines spin between tasks meanwhile
        self.doorbell = Bell()  # the collector polls it
        self.collector_thread: Optional[threading.Thread] = None  # set by the collector
        self._next_id = 0
        self._seqs = itertools.count(1)  # task numbers, unique per cluster
        self.mean_task_seconds: Optional[float] = None  # moving average of run times (the balancer's hint)
        self._spin_hint = spin_hint
        # Reentrant: a predicate may finish a Future, whose callbacks may wait in turn.
        self._changed = threading.Condition(threading.RLock())
        self._generation = 0  # batches applied; guarded by _changed
        self._watchers = 0  # threads in wait_until; guarded by _changed
        # The balancer's hooks (see the module docstring): set once, before any task.
        self.on_error: Optional[Callable[[TaskRecord], bool]] = None
        self.on_watched_done: Optional[Callable[[TaskRecord], None]] = None
        self.taskdb: Optional[TaskDB] = None  # told each completion (set before any task)

    # -- engines ------------------------------------------------------------------------
    def add_engine(self, handle: EngineHandle) -> None:
        with self.lock:
            self.engines[handle.id] = handle
            self.version += 1
        self.doorbell.ring()

    def reserve_ids(self, n: int) -> List[int]:
        """`n` engine ids never used before (two threads adding engines get different ones)."""
        with self.lock:
            first = max(self._next_id, max(self.engines, default=-1) + 1)
            self._next_id = first + n
            return list(range(first, first + n))

    def replacement_coming(self, engine_id: int) -> None:
        """Engine `engine_id` died and will be replaced: said before its tasks fail, so that a
        call made right after their EngineError can wait for the new engine."""
        with self.lock:
            self.replacing.add(engine_id)

    def replacement_done(self, engine_id: int) -> None:
        """The replacement of `engine_id` is in `engines`, or could not start."""
        with self.lock:
            self.replacing.discard(engine_id)
        self.notify_waiters()

    def replacement_among(self, allowed: Optional[List[int]]) -> bool:
        """Whether an engine of `allowed` (None: any) is being replaced: the balancer then keeps
        the tasks only it could take queued, instead of failing them with NoEnginesError."""
        with self.lock:
            return any(allowed is None or i in allowed for i in self.replacing)

    def wait_for_replacements(self, engine_ids: List[int], timeout: float) -> bool:
        """Wait until none of `engine_ids` is being replaced; False if one still was after
        `timeout` seconds.  Not in the collector thread (it would wait for itself): there False."""
        if threading.current_thread() is self.collector_thread:
            return False

        def settled() -> bool:
            with self.lock:
                return self.closed or not self.replacing.intersection(engine_ids)

        return self.wait_until(settled, timeout)

    def live_after_replacements(self, engine_ids: List[int]) -> List[int]:
        """The live ids, once none of `engine_ids` is being replaced (bounded by REPLACEMENT_WAIT)."""
        if self.replacing.intersection(engine_ids):  # one read; the wait re-reads it under the lock
            self.wait_for_replacements(engine_ids, REPLACEMENT_WAIT)
        return self.live_ids()

    def replacing_note(self, engine_ids: List[int]) -> str:
        """For the error of a call on `engine_ids`: those still being replaced, and what to do."""
        late = sorted(self.replacing.intersection(engine_ids))
        if not late:
            return ""
        return (
            f"; engine{'s' if len(late) > 1 else ''} {late} {'are' if len(late) > 1 else 'is'} being replaced "
            f"(restart_dead or memory_limit) and not up yet: call again once in c.ids (c.status() shows them)"
        )

    def wait_for_abort_answers(self, records: List[TaskRecord]) -> bool:
        """Until each of `records` is done or its engine said it had started (bounded by
        CANCEL_WAIT): what ``cancel()`` waits for after sending the Abort."""
        settled = 0  # records[:settled] are done or had started: either stays so

        def answered() -> bool:
            nonlocal settled
            while settled < len(records) and (records[settled].done or records[settled].abort_refused):
                settled += 1
            return settled == len(records)

        return self.wait_until(answered, CANCEL_WAIT)

    def live_ids(self) -> List[int]:
        with self.lock:
            return sorted(i for i, h in self.engines.items() if h.alive)

    def live_handles(self) -> List[EngineHandle]:
        with self.lock:
            return [h for h in self.engines.values() if h.alive]

    def load(self) -> Dict[EngineHandle, int]:
        """Each live engine and how many tasks it has pending."""
        with self.lock:
            return {h: len(h.pending) for h in self.engines.values() if h.alive}

    def counts(self) -> Dict[int, Tuple[int, int]]:
        """``{engine_id: (tasks pending, tasks completed)}`` of the live engines."""
        with self.lock:
            return {h.id: (len(h.pending), h.completed) for h in self.engines.values() if h.alive}

    def engine_died(self, handle: EngineHandle) -> List[TaskRecord]:
        """Mark `handle` dead; returns its pending records, in submission order."""
        with self.lock:
            handle.alive = False
            self.version += 1
            pending = [self.records[s] for s in sorted(handle.pending) if s in self.records]
        # It may have died spinning: its byte would count against MAX_SPINNERS for its replacement.
        self._spin_hint.forget(handle.id)
        return pending

    def watch_again(self) -> None:
        """The collector must rebuild what it polls (a pipe's backlog began or drained)."""
        with self.lock:
            self.version += 1
        self.doorbell.ring()

    # -- tasks --------------------------------------------------------------------------
    def next_seq(self) -> int:
        """A task number never used before (``next`` on a count is atomic)."""
        return next(self._seqs)

    def reclaimable(self, handle: EngineHandle, engine_ids: List[int]) -> List[int]:
        """`handle`'s load-balanced tasks, past its oldest, that may run on one of `engine_ids`."""
        with self.lock:
            seqs = sorted(handle.pending)[1:]
            return [
                s
                for s in seqs
                if (r := self.records.get(s)) is not None
                and r.call is not None
                and (r.allowed is None or any(i in r.allowed for i in engine_ids))
            ]

    def reclaimed(self, handle: EngineHandle, seqs: List[int]) -> List[TaskRecord]:
        """`handle` gave these tasks back unstarted: untrack them; returns their records."""
        with self.lock:
            records = []
            for seq in seqs:
                record = self.records.get(seq)
                if record is not None and seq in handle.pending:
                    del self.records[seq]
                    self.balanced -= record.call is not None
                    handle.pending.discard(seq)
                    record.engine_id = -1
                    records.append(record)
            return records

    def register(self, record: TaskRecord) -> bool:
        """Track a task before it is sent; False if its engine is dead or the client closed."""
        with self.lock:
            if chaos.ENABLED:
                chaos.pause()
            handle = self.engines.get(record.engine_id)
            if handle is None or not handle.alive or self.closed:
                return False
            self.records[record.seq] = record
            self.balanced += record.call is not None
            handle.pending.add(record.seq)
            return True

    def send(self, record: TaskRecord, call: bytes) -> None:
        """Register a task, then write it to its engine (registered first, so its result has a home)."""
        handle = self.engines[record.engine_id]
        if not self.register(record):
            if self.closed:
                self.fail(record, ClientClosedError(f"the client was closed while task {record.msg_id} was sent"))
            else:
                self.fail(record, EngineError(record.engine_id, handle.exitcode, record.msg_id))
            return
        handle.send_task(record.seq, call)

    def complete(self, record: TaskRecord) -> None:
        """`record` has its outcome: count it off its AsyncResult, finishing it if last."""
        if record.status == "error" and record.call is not None and self.on_error is not None and self.on_error(record):
            return  # load-balanced, and it runs again (retries, an unmet @depend)
        with self.lock:
            if chaos.ENABLED:
                chaos.pause()
            if record.done:
                return
            record.done = True
            if self.records.pop(record.seq, None) is not None:
                self.balanced -= record.call is not None
            self._off_its_engine(record)
            result, record.result = record.result, None  # no cycle: an array can die with its result
            last = result is not None and result.task_done()
            parts = record.parts
            if parts:
                record.parts = ()
        if self.taskdb is not None:  # before the Future finishes: the database has it when get() returns
            self.taskdb.finished(record, result)
        for part in parts:  # split() parts first: a waiter woken by the whole sees its parts done
            part.finish()
        if last and result is not None:
            if chaos.ENABLED:
                chaos.pause()
            result.finish()
        if record.watched and self.on_watched_done is not None:  # read after `done` is set: see dependencies
            self.on_watched_done(record)
        if threading.current_thread() is not self.collector_thread:
            self.notify_waiters()  # the collector notifies once per batch, after applying it

    def retract(self, record: TaskRecord) -> bool:
        """Take back a failed task that will run again (the balancer's retry): untrack it as
        `reclaimed` does; False if it completed meanwhile or is not tracked."""
        with self.lock:
            if record.done or self.closed or self.records.get(record.seq) is not record:
                return False
            del self.records[record.seq]
            self.balanced -= record.call is not None
            self._off_its_engine(record)
            return True

    def _off_its_engine(self, record: TaskRecord) -> None:
        """`record` is no longer pending on its engine: counted as done there.  Under `lock`."""
        handle = self.engines.get(record.engine_id)
        if handle is not None and record.seq in handle.pending:
            handle.pending.discard(record.seq)
            handle.completed += 1
            handle.idle_since = record.received or time.time()

    def add_part(self, record: TaskRecord, part: AsyncResult) -> bool:
        """Have `part` (a `split()` result over `record` alone) finished when `record` completes;
        False if it is done already (the caller finishes `part`)."""
        with self.lock:
            if record.done:
                return False
            record.parts += (part,)
            return True

    def check_can_wait(self) -> None:
        """Refuse to block the collector thread: it would wait for itself."""
        if threading.current_thread() is self.collector_thread:
            raise RuntimeError(
                "cannot wait for a localpar result inside a callback (on_data, add_done_callback): "
                "callbacks run in the thread that completes results; submit from it, wait elsewhere"
            )

    def fail(self, record: TaskRecord, error: KernelError, status: str = "error") -> None:
        """Complete a record that will never get its result."""
        if record.done:
            return
        record.status, record.error = status, error
        self.complete(record)

    def pending_records(self) -> List[TaskRecord]:
        with self.lock:
            return list(self.records.values())

    # -- waiting ------------------------------------------------------------------------
    @contextlib.contextmanager
    def waiting(self) -> Iterator[bool]:
        """Around a caller's wait for a result: engines spin between tasks meanwhile, if a
        CPU is to spare (``spin.cpu_to_spare``); yields that answer, for the caller's own spin."""
        spare = spin.cpu_to_spare()
        with self.lock:
            self.waiters += 1
            first = self.waiters == 1
        if first and spare:
            self._spin_hint.waiting()
        if chaos.ENABLED:
            chaos.pause()
        try:
            yield spare
        finally:
            with self.lock:
                self.waiters -= 1
                last = self.waiters == 0
            if last:
                self._spin_hint.done_waiting()  # also ends the spinning begun above

    def notify_waiters(self) -> None:
        """The collector applied a batch: wake every `wait_until` to look again."""
        if chaos.ENABLED:
            chaos.pause()
        with self._changed:
            self._generation += 1
            if self._watchers:
                self._changed.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: Optional[float]) -> bool:
        """Block until `predicate()` holds; False after `timeout` seconds (None or negative: no limit)."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        with self._changed:
            self._watchers += 1
            try:
                while not predicate():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._changed.wait(remaining)
                return True
            finally:
                self._watchers -= 1

    def close(self) -> None:
        """No more tasks; wake every waiter to see it."""
        with self.lock:
            self.closed = True
        with self._changed:
            self._changed.notify_all()
        self.doorbell.ring()
