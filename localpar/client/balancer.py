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

Tasks with flags (``retries``, ``after``, ``follow``, ``timeout``: see ``dependencies``)
carry a `TaskFlags` on their record.  One waiting for dependencies is held in `Waits`
until the completion of what it waits for wakes it (`dependency_done`); one ready to run
waits in `_stalled` for an engine it may run on (not one that failed it, the one it
follows, one of its targets), placed at each `schedule` without holding up the plain
queue.  A task that raised or whose engine died comes back through `retry` (called by
``Ledger.complete``) while it has retries left, under a new number, with what it had
published so far for `resume_data`.  `_lock` guards all of these, and each record's
flags.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterable, List, Optional, Set, Tuple

from .. import chaos
from ..errors import (
    ClientClosedError,
    ImpossibleDependency,
    InvalidDependency,
    KernelError,
    NoEnginesError,
    RemoteError,
    TaskAborted,
    TaskTimeout,
    scheduling_error,
)
from ..wire.messages import Reclaim
from ..wire.ops import EngineOp
from .dependencies import Deadlines, FlagValues, TaskFlags, Waits, ran_on

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .handles import EngineHandle, TaskRecord
    from .ledger import Ledger

_logger = logging.getLogger("localpar")
_resume = EngineOp("resume")  # a retried call, run with its earlier attempts' data (engine.dependent)

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
        # Tasks with flags (see the module docstring), and what the client lends for them.
        self._stalled: Deque[Queued] = deque()  # ready, waiting for an engine they may run on
        self._waits = Waits()  # waiting for dependencies
        self._finished: Deque[TaskRecord] = deque()  # watched records done, to wake their waiters
        self._waking = False  # a thread is waking waiters (the others leave theirs to it)
        self.deadlines = Deadlines(self._wake_collector, self.expire)  # watched by the collector thread
        ledger.on_error = self.retry  # a failed balanced task may run again (Ledger.complete)
        ledger.on_watched_done = self.dependency_done
        self.find_records: Callable[[Iterable[str]], Dict[str, TaskRecord]] = lambda ids: {}
        self.encode: Optional[Callable[[Any], Tuple[bytes, list]]] = None  # pickles a call
        self.will_replace: Callable[[EngineHandle], bool] = lambda handle: False

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
        if not self._queue and not self._ledger.balanced and not self._stalled:
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
                if record.flags is not None:  # placed below, never holding up the others
                    self._stalled.append(self._queue.popleft())
                    continue
                least = min((h for h in load if allowed is None or h.id in allowed), key=load.__getitem__, default=None)
                if least is None:
                    if self._ledger.replacement_among(allowed):
                        break  # its engine is on its way: scheduled again once it is (or is not) there
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
            if self._stalled:
                self._place_stalled(load, refilled, depth, to_send, to_fail)
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

    def _place_stalled(
        self,
        load: Dict[EngineHandle, int],
        refilled: Set[EngineHandle],
        depth: int,
        to_send: List[Tuple[EngineHandle, TaskRecord, bytes]],
        to_fail: List[Tuple[TaskRecord, KernelError, str]],
    ) -> None:
        """Hand out the flagged tasks that have an engine they may run on with room, in order;
        fail those none can ever run on.  `_lock` is held."""
        kept: Deque[Queued] = deque()
        while self._stalled:
            item = self._stalled.popleft()
            ar, record, call, _ = item
            flags = record.flags
            assert flags is not None
            allowed = [h for h in load if flags.may_run_on(h)]
            if not allowed:
                why = self._never_runs(record, flags)
                if why is None:
                    kept.append(item)  # an engine it may run on may still come
                else:
                    to_fail.append((record, why, "error"))
                continue
            least = min(allowed, key=load.__getitem__)
            if least not in refilled or load[least] >= depth:
                kept.append(item)
                continue
            if not ar.mark_sent():  # cancelled meanwhile
                to_fail.append((record, TaskAborted(record.msg_id), "aborted"))
                continue
            record.engine_id = least.id
            record.call, record.allowed = call, [h.id for h in allowed]  # reclaimed only for these
            if self._ledger.register(record):
                flags.wait_token += 1  # no longer waiting: its deadline is void
                load[least] += 1
                to_send.append((least, record, call))
            else:  # it died meanwhile
                record.engine_id = -1
                kept.append(item)
                del load[least]
        self._stalled = kept

    def _never_runs(self, record: TaskRecord, flags: TaskFlags) -> Optional[KernelError]:
        """Why no engine can ever run this task (no live one may): None while one may still come
        (a dead one being replaced, or, with no targets, engines added later, as ipyparallel
        waits).  `_lock` is held."""
        with self._ledger.lock:
            handles = list(self._ledger.engines.values())
        if flags.follow is not None and not any(h.alive and flags.may_run_on(h) for h in flags.follow.where):
            return scheduling_error(
                ImpossibleDependency,
                f"task {record.msg_id} can never run: the engine of the tasks it follows is gone, or may not run it",
            )
        targets = flags.targets
        if any(not h.alive and self.will_replace(h) and (targets is None or h.id in targets) for h in handles):
            return None
        if targets is not None:
            return scheduling_error(
                ImpossibleDependency,
                f"task {record.msg_id}: no engine left among its targets {targets} that has not failed it",
            )
        if not any(h.alive for h in handles):
            return NoEnginesError(f"no live engine to run task {record.msg_id}")
        return None

    # -- tasks with flags -------------------------------------------------------------------
    def submit_flagged(self, ar: AsyncResult, items: List[Tuple[TaskRecord, bytes, Optional[List[int]]]],
                       values: FlagValues) -> None:  # fmt: skip
        """Queue tasks with flags: each waits for its dependencies, then for an engine it may run on."""
        own = {record.msg_id for record, _, _ in items}
        named = set().union(*(d for d in (values.after, values.follow) if d is not None))
        found = self.find_records(named - own)
        unknown = sorted(named - found.keys())
        to_fail: List[Tuple[TaskRecord, KernelError]] = []
        with self._lock:
            for record, call, allowed in items:
                flags = record.flags = TaskFlags(values, allowed)
                flags.call = call
                if unknown:
                    why = "itself" if set(unknown) & own else f"msg_ids the client does not know: {unknown}"
                    to_fail.append(
                        (record, scheduling_error(InvalidDependency, f"task {record.msg_id} depends on {why}"))
                    )
                    continue
                waiting = set()
                for progress in (flags.after, flags.follow):
                    if progress is None:
                        continue
                    for msg_id in progress.dep:
                        dep = found[msg_id]
                        dep.watched = True  # before looking at done: see dependency_done
                        if chaos.ENABLED:
                            chaos.pause()
                        if dep.done:
                            progress.finished(dep.error is None, ran_on(dep, self._ledger.engines))
                        else:
                            waiting.add(msg_id)
                if flags.unreachable():
                    to_fail.append((record, self._impossible(record)))
                    continue
                self._arm(record, flags)
                if waiting:
                    flags.waiting_for = len(waiting)
                    for msg_id in waiting:
                        self._waits.wait(msg_id, record)
                    self._waits.held[record] = (ar, record, call, allowed)
                else:
                    self._stalled.append((ar, record, call, allowed))
        for record, error in to_fail:
            self._ledger.fail(record, error)
        self.schedule()

    def _wake_collector(self) -> None:
        """A nearer deadline: the collector must poll with a shorter timeout."""
        self._ledger.doorbell.ring()

    def _impossible(self, record: TaskRecord) -> KernelError:
        """The error of a task whose dependencies can no longer be met, saying which."""
        flags = record.flags
        if flags is not None and flags.after is not None and flags.after.is_unreachable():
            why = "a task it runs after (after=) ended in a way its Dependency rules out"
        elif flags is not None and flags.follow is not None and flags.follow.is_unreachable():
            why = "a task it follows (follow=) ended in a way its Dependency rules out"
        else:
            why = "the tasks it follows (follow=) ran on different engines, or on an engine that is gone"
        return scheduling_error(ImpossibleDependency, f"task {record.msg_id} can never run: {why}")

    def _arm(self, record: TaskRecord, flags: TaskFlags) -> None:
        """Start the task's timeout (it waits from now on); `_lock` is held."""
        if flags.timeout > 0:
            flags.wait_token += 1
            self.deadlines.add(time.monotonic() + flags.timeout, record, flags.wait_token)

    def dependency_done(self, record: TaskRecord) -> None:
        """A task others may wait for is done (``Ledger.complete``, any thread): wake them.
        One thread at a time wakes; a failure it causes is woken by the same loop, not by
        recursion, so that a long chain of impossible tasks fails without deep stacks."""
        with self._lock:
            self._finished.append(record)
            if self._waking:
                return
            self._waking = True
        while True:
            ready = False
            to_fail: List[TaskRecord] = []
            with self._lock:
                if not self._finished or self._ledger.closed:  # close() fails the held ones
                    self._finished.clear()
                    self._waking = False
                    return
                dep = self._finished.popleft()
                ok = dep.error is None
                engine = ran_on(dep, self._ledger.engines)
                for waiter in self._waits.woken(dep.msg_id):
                    entry = self._waits.held.get(waiter)
                    flags = waiter.flags
                    if entry is None or flags is None:
                        continue  # no longer waiting (aborted, timed out, failed)
                    for progress in (flags.after, flags.follow):
                        if progress is not None and dep.msg_id in progress.dep:
                            progress.finished(ok, engine)
                    flags.waiting_for -= 1
                    if flags.unreachable():
                        del self._waits.held[waiter]
                        to_fail.append(waiter)
                    elif flags.waiting_for == 0:
                        del self._waits.held[waiter]
                        self._stalled.append(entry)
                        ready = True
            for waiter in to_fail:
                self._ledger.fail(waiter, self._impossible(waiter))
            if ready:
                self.schedule()

    def retry(self, record: TaskRecord) -> bool:
        """`record` failed on an engine (``Ledger.complete``, before it completes): run it again
        if it has retries left, or if its ``@depend`` check said no; True if it will run again.

        The engine that failed it is left out.  What it published so far stays on its data
        (``ar.data``) and reaches the next attempt as ``resume_data()``."""
        error = record.error
        flags = record.flags
        ar = record.result
        if not isinstance(error, RemoteError) or ar is None or self._ledger.closed:
            return False
        unmet = error.ename == "UnmetDependency"
        if not unmet and (flags is None or flags.retries <= 0):
            return False
        # The process it failed on, not whichever holds its id now: a replacement may already
        # (restart_dead, memory_limit), and must not be left out with the dead one.
        failed_on = ran_on(record, self._ledger.engines)
        original = flags.call if flags is not None and flags.call is not None else record.call
        if original is None or not self._ledger.retract(record):
            return False  # completed meanwhile, or never registered
        call = self._resumed_call(ar, record, original)
        if chaos.ENABLED:
            chaos.pause()
        with self._lock:
            if flags is None:
                flags = record.flags = TaskFlags(None, record.allowed)
                flags.call = original
            if not unmet:
                flags.retries -= 1
            if failed_on is not None:
                flags.blacklist.add(failed_on)
            _reset_attempt(record, self._ledger.next_seq())
            aborted = record.abort_requested  # abort() came while it was between two attempts
            if not aborted:
                self._arm(record, flags)
                self._stalled.appendleft((ar, record, call, flags.targets))
        if aborted:
            self._ledger.fail(record, TaskAborted(record.msg_id), status="aborted")
        else:
            self.schedule()
        return True

    def _resumed_call(self, ar: AsyncResult, record: TaskRecord, call: bytes) -> bytes:
        """The call of the next attempt: with what the task published so far, if anything, for
        ``resume_data()``; pickled here (not under a lock: it may run user code)."""
        state = ar.data_slots()[record.index]
        if not state or self.encode is None:
            return call
        try:
            blob, segments = self.encode((_resume, (dict(state), call), {}))
        except Exception as exc:  # it came from a pickle: this is not expected; run it fresh
            _logger.warning("task %s: its published data cannot be handed to its retry: %s", record.msg_id, exc)
            return call
        if segments:
            ar.hold_segments(segments)
        return blob

    def expire(self, record: TaskRecord, token: int) -> None:
        """A deadline came (collector thread): fail the task if it is still waiting since then."""
        with self._lock:
            flags = record.flags
            if flags is None or flags.wait_token != token:
                return
            flags.wait_token += 1
            if self._waits.forget([record]):
                pass
            elif any(item[1] is record for item in self._stalled):
                self._stalled = deque(item for item in self._stalled if item[1] is not record)
            else:
                return  # on an engine by now
        self._ledger.fail(
            record,
            scheduling_error(TaskTimeout, f"task {record.msg_id} still waited after its timeout of {flags.timeout} s"),
        )

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
            dropped = [item[1] for item in self._queue] + [item[1] for item in self._stalled]
            dropped += [item[1] for item in self._waits.forget(list(self._waits.held))]
            self._queue.clear()
            self._stalled.clear()
            self._waits.by_msg_id.clear()
            self._finished.clear()
        self.deadlines.clear()
        for record in dropped:
            self._ledger.fail(record, ClientClosedError(f"{reason} while task {record.msg_id} was queued"))

    def queued_records(self) -> List[TaskRecord]:
        with self._lock:
            return [record for _, record, _, _ in self._queue]

    def queued_msg_ids(self) -> Set[str]:
        with self._lock:
            held = [item[1] for item in self._stalled] + list(self._waits.held)
            return {record.msg_id for _, record, _, _ in self._queue} | {record.msg_id for record in held}

    def drop(self, records: List[TaskRecord]) -> List[TaskRecord]:
        """Abort those of `records` still queued; the others are marked, so that one an
        engine hands back is not queued again.  Returns the dropped ones."""
        with self._lock:
            for record in records:
                record.abort_requested = True
            dropped = [item[1] for item in self._queue if item[1].abort_requested]
            if dropped:
                self._queue = deque(item for item in self._queue if not item[1].abort_requested)
            stalled = [item[1] for item in self._stalled if item[1].abort_requested]
            if stalled:
                self._stalled = deque(item for item in self._stalled if not item[1].abort_requested)
            dropped += stalled + [item[1] for item in self._waits.forget(records)]
        for record in dropped:
            self._ledger.fail(record, TaskAborted(record.msg_id), status="aborted")
        return dropped

    def _remove(self, ar: AsyncResult) -> List[TaskRecord]:
        """Take `ar`'s tasks out of the queue (the lock is held)."""
        mine = [item[1] for item in self._queue if item[0] is ar]
        if mine:
            self._queue = deque(item for item in self._queue if item[0] is not ar)
        stalled = [item[1] for item in self._stalled if item[0] is ar]
        if stalled:
            self._stalled = deque(item for item in self._stalled if item[0] is not ar)
        return mine + stalled + [item[1] for item in self._waits.forget(list(ar.records))]


def _reset_attempt(record: TaskRecord, seq: int) -> None:
    """Make `record` a fresh attempt under number `seq` (its data, on its AsyncResult, stays)."""
    record.seq = seq
    record.engine_id = -1
    record.status = record.error = record.value = None
    record.started = record.completed = record.received = None
    record.output = ()  # as ipyparallel: the output of the attempt that counts
    record.pubs_expected = None
    record.pubs_applied = 0
    record.last_pubseq = 0
    record.progress = None
    record.data_errors = ()
