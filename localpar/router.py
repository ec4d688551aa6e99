"""The client's reading side: one reader at a time applies everything engines send.

    engine i ── event pipe i ───┐
    engine i ── sentinel i ─────┤                    ┌─► TaskRecord (value/error, meta)
    all engines ── pub queue ───┼─► Router.pump() ───┼─► AsyncResult.data (dict.update)
    Manager ── sentinel ────────┤   (whoever holds   └─► EngineError for a dead engine's
    close() ── wake pipe ───────┘    the read lock)       pending tasks; DataStoreError

Whoever needs progress reads: a caller blocked in ``get()`` becomes the reader
itself (no hand-off between threads on the hot path) and polls for up to 100 µs
before blocking, with the cluster's ``SpinHint`` raised so that engines spin
too (see ``spin``); ``ar.data`` and ``ready()`` apply what has already arrived
without blocking, and the drain thread reads whenever nobody else does.  Task
pipes whose engine has a backlog (see ``handles``) are watched for room and
flushed by the same reader.  The read lock guarantees one reader at a time
per channel.  While callers read, and for 2 ms after, the drain thread stays out
of ``poll`` altogether: two threads woken by one message would fight for the GIL.
Completing futures and running user callbacks happen after the lock is
released, so a callback may submit or wait freely.

Ordering: an engine writes a task's publications before its result, and the
result says how many it wrote; a record completes only once that many are
applied, so ``get()`` never returns before ``ar.data`` is final.
"""

from __future__ import annotations

import _signal
import collections
import math
import os
import pickle
import select
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple

from . import sharedmem, spin
from .engine import TASK_HEADER
from .errors import ClientClosedError, EngineError, RemoteError, SerializationError, TaskAborted
from .handles import EngineHandle, TaskRecord
from .pubqueue import PublicationQueue
from .serialization import loads, segments_of
from .spin import SpinHint, spin_until_ready

if TYPE_CHECKING:
    from .asyncresult import AsyncResult


DRAIN_PARK_SECONDS = 0.002
SUBMIT_PUMP_SECONDS = 50e-6
_MAIN_THREAD = threading.main_thread().ident
_SIGINT = {int(signal.SIGINT)}
_sigmask = _signal.pthread_sigmask  # signal's wrapper turns masks into enums at 3x the cost


class Router:
    def __init__(self, cluster_id: str, queue: PublicationQueue, spin_hint: SpinHint) -> None:
        self.cluster_id = cluster_id
        self.queue = queue
        self.spin_hint = spin_hint  # raised while a caller waits: engines then spin between tasks
        self.read_lock = threading.RLock()  # one reader at a time
        self.state_lock = threading.Lock()  # records/pending/alive; never held while blocking
        self.engines: Dict[int, EngineHandle] = {}
        self.records: Dict[int, TaskRecord] = {}
        self.closed = False
        self.fds_closed = False
        self.store: Any = None  # datastore.DataStore once started
        self.store_error: Optional[str] = None
        self._to_finish: Deque[AsyncResult] = collections.deque()
        self._to_notify: Deque[AsyncResult] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._version = 0
        self._local = threading.local()
        self.generation = 0  # bumped after every batch of applied messages
        self._changed = threading.Condition()
        self._followers = 0  # threads waiting on _changed for another reader's progress
        self._dirty = False  # messages were applied: followers look again
        self._room_changed = False  # the balancer looks again
        # Engine segments whose arrays the client dropped; appended from GC
        # finalizers (any thread, any moment), so flushed later, outside locks.
        self._released: Deque[sharedmem.SegmentRef] = collections.deque()
        self._leaders = 0  # callers currently reading for themselves
        self._leaders_lock = threading.Lock()  # taken directly: a Condition's own with-block costs more
        self._leaders_changed = threading.Condition(self._leaders_lock)
        self.batches = 0  # batches of messages applied, ever (changes under read_lock)
        self._park_until = 0.0  # the drain thread stays out of the way until then
        self._next_submit_pump = 0.0
        self.mean_task_seconds: Optional[float] = None  # moving average of task run times (the balancer's hint)
        self._drain_polling = False  # the drain thread holds the read lock, blocked in poll
        self._drain_awaits_leaders = False  # the drain thread waits for the last leader to leave
        self.on_task_done: Optional[Callable[[], None]] = None  # the load balancer's hook

    # -- registration (any thread) ---------------------------------------------------
    def add_engine(self, handle: EngineHandle) -> None:
        with self.state_lock:
            self.engines[handle.id] = handle
            self._version += 1

    def register(self, record: TaskRecord) -> bool:
        """Track a task before it is sent; False if its engine is already dead."""
        with self.state_lock:
            handle = self.engines.get(record.engine_id)
            if handle is None or not handle.alive or self.closed:
                return False
            self.records[record.seq] = record
            handle.pending.add(record.seq)
            return True

    def send(self, record: TaskRecord, call: bytes) -> None:
        """Send a task to its engine, tracked first so that its result has a home."""
        handle = self.engines[record.engine_id]
        if not self.register(record):
            self.fail(record, EngineError(record.engine_id, handle.exitcode, record.msg_id))
            return
        if handle.send_task(TASK_HEADER.pack(record.seq) + call):
            self._watch_backlogs()

    def _watch_backlogs(self) -> None:
        """Readers rebuild their poll sets, now watching task pipes with a backlog for room."""
        with self.state_lock:
            self._version += 1
        self.wake()

    def client_fds(self) -> List[int]:
        """Client-side descriptors a forked child must close."""
        fds = [self._wake_r, self._wake_w, self.queue.reader_fd]
        for h in self.engines.values():
            if h.alive:
                fds += [h.tasks.fileno(), h.control.fileno(), h.events.fileno()]
        return fds

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    # -- reading ------------------------------------------------------------------------
    def _lead(self) -> bool:
        """Become the one reader; the drain thread steps aside.  False: follow another caller."""
        with self._leaders_lock:
            self._leaders += 1
        try:
            if self.read_lock.acquire(blocking=False):
                return True
            if self._drain_polling:  # the drain thread is blocked in poll: wake it, it yields
                self.wake()
                if self.read_lock.acquire(timeout=0.01):
                    return True
        except BaseException:
            self._unlead()
            raise
        self._unlead()
        return False

    def _unlead(self) -> None:
        with self._leaders_lock:
            self._leaders -= 1
            # Keep the drain thread parked a moment: a caller polling ar.data or
            # calling get() in a loop then reads everything itself, no hand-off.
            # It sleeps out the park on its own; wake it only if it waits for us.
            self._park_until = time.monotonic() + DRAIN_PARK_SECONDS
            if self._drain_awaits_leaders and not self._leaders:
                self._drain_awaits_leaders = False
                self._leaders_changed.notify_all()

    def pump(
        self, timeout: Optional[float], since: Optional[int] = None, ready: Optional[List[Tuple[int, int]]] = None
    ) -> bool:
        """Read and apply what arrives within `timeout`; False if another caller is reading.

        With `since` (a value of ``batches`` read before the caller last checked its
        condition), return at once if another thread applied messages meanwhile:
        what the caller waits for may have arrived, so blocking now could be forever.
        With `ready` (a poll result the caller already has), apply that without polling;
        it may be stale, which is harmless: every read is non-blocking.
        """
        if not self._lead():
            return False
        try:
            if not self.fds_closed and (since is None or since == self.batches):
                if ready is None:
                    poller = self._poller()
                    if timeout is None or timeout > 0:
                        self.spin_hint.waiting()
                        try:
                            spin_until_ready(poller, None if timeout is None else min(timeout, spin.SPIN_SECONDS))
                            ready = poller.poll(-1 if timeout is None else max(0, math.ceil(timeout * 1000)))
                        finally:
                            self.spin_hint.done_waiting()
                    else:
                        ready = poller.poll(0)
                if ready:
                    self._handle_holding_sigint(ready)
        finally:
            self.read_lock.release()
            self._unlead()
        self.run_callbacks()
        return True

    def pump_nowait(self) -> None:
        """Apply what has already arrived, without blocking.

        A caller polling ``ar.data`` in a loop reads for itself: the drain thread
        is kept parked (and woken out of ``poll`` to park), so that a message is
        not raced for by two threads, which costs a wake-up and a GIL hand-off.
        """
        if self.fds_closed:
            self.run_callbacks()
            return
        ready = self._poller().poll(0)
        if ready and self.pump(0, ready=ready):
            return
        self._park_until = time.monotonic() + DRAIN_PARK_SECONDS
        if self._drain_polling:
            self.wake()
        self.run_callbacks()

    def pump_while_submitting(self) -> None:
        """A submitting loop applies results (and so feeds the balancer) as it goes,
        at most every ``SUBMIT_PUMP_SECONDS``: results are then read in batches."""
        now = time.monotonic()
        if now >= self._next_submit_pump:
            self._next_submit_pump = now + SUBMIT_PUMP_SECONDS
            self.pump_nowait()

    def drain_forever(self, before: Optional[Callable[[], None]] = None) -> None:
        """The drain thread: read whenever no caller does, until close()."""
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # Ctrl-C is the main thread's
        if before is not None:
            before()
        while not self.closed:
            with self._leaders_lock:  # stand aside while callers read for themselves
                while not self.closed:
                    if self._leaders:
                        self._drain_awaits_leaders = True
                        self._leaders_changed.wait(0.05)
                        continue
                    parked = self._park_until - time.monotonic()
                    if parked <= 0:
                        break
                    self._leaders_changed.wait(parked)
            with self.read_lock:
                if self.closed or self.fds_closed:
                    break
                self._drain_polling = True
                if self._leaders:  # a caller came in meanwhile
                    self._drain_polling = False
                    continue
                try:
                    ready = self._poller().poll(-1)
                finally:
                    self._drain_polling = False
                self._handle(ready)
            self.run_callbacks()

    def flush_releases(self) -> None:
        """Tell engines which of their segments they may reuse."""
        names: Dict[str, List[str]] = {}
        for ref in _take_all(self._released):
            owner = ref.name.rsplit("-", 2)[-2]  # localpar-<cluster>-<pid>-<n>
            names.setdefault(owner, []).append(ref.name)
        by_pid = {str(h.pid): h for h in self.engines.values() if h.alive}
        for pid, batch in names.items():
            handle = by_pid.get(pid)
            if handle is not None:
                handle.send_control(("release", batch))

    def wait_until(self, predicate: Callable[[], bool], timeout: Optional[float]) -> bool:
        """Read (or follow whoever reads) until `predicate()` holds; False after `timeout`
        seconds (None or negative: no limit)."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        while True:
            generation, batches = self.generation, self.batches
            self.run_callbacks()
            if predicate():
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if self.closed:
                self.run_callbacks()
                return predicate()
            if not self.pump(remaining, since=batches):
                self._wait_for_change(generation, 0.05 if remaining is None else min(remaining, 0.05))

    def _wait_for_change(self, generation: int, timeout: float) -> None:
        """Block until a batch after `generation` is applied, or `timeout`."""
        with self._changed:
            self._followers += 1
            try:
                if self.generation == generation:
                    self._changed.wait(timeout)
            finally:
                self._followers -= 1

    def run_callbacks(self) -> None:
        """Notify data watchers, then complete futures (data first, as promised), outside the read lock."""
        if self._to_notify:
            for ar in _take_all(self._to_notify):
                ar._notify_data()
        if self._to_finish:
            for ar in _take_all(self._to_finish):
                ar._finish()
        if self._released:
            self.flush_releases()
        if self._room_changed:  # a task finished or an engine came up: the balancer may send more
            self._room_changed = False
            if self.on_task_done is not None:
                self.on_task_done()
        if self._dirty:
            self._dirty = False
            self.generation += 1
            if self._followers:
                with self._changed:
                    self._changed.notify_all()

    def _poller(self) -> select.poll:
        local = self._local
        if getattr(local, "version", None) != self._version:
            poller = select.poll()
            fdmap: Dict[int, Tuple[str, Any]] = {self._wake_r: ("wake", None), self.queue.reader_fd: ("queue", None)}
            with self.state_lock:
                for h in self.engines.values():
                    if h.alive:
                        fdmap[h.events.fileno()] = ("events", h)
                        fdmap[h.process.sentinel] = ("sentinel", h)
                        if h.outbox:
                            fdmap[h.tasks_fd] = ("tasks", h)
                if self.store is not None and self.store_error is None:
                    fdmap[self.store.sentinel] = ("store", None)
                local.version = self._version
            for fd, (kind, _) in fdmap.items():
                poller.register(fd, select.POLLOUT if kind == "tasks" else select.POLLIN)
            local.poller, local.fdmap = poller, fdmap
        return local.poller

    def _handle_holding_sigint(self, ready: List[Tuple[int, int]]) -> None:
        """`_handle`, with a Ctrl-C held back while messages are half-applied and raised right after."""
        if threading.get_ident() != _MAIN_THREAD:
            self._handle(ready)  # only the main thread gets KeyboardInterrupt
            return
        try:
            old = _sigmask(signal.SIG_BLOCK, _SIGINT)
        except KeyboardInterrupt:  # it came just before the mask took effect
            _sigmask(signal.SIG_UNBLOCK, _SIGINT)
            raise
        try:
            self._handle(ready)
        finally:
            _sigmask(signal.SIG_SETMASK, old)

    def _handle(self, ready: List[Tuple[int, int]]) -> None:
        self._dirty = True
        self.batches += 1
        fdmap = self._local.fdmap
        deaths: List[EngineHandle] = []
        for fd, _ in ready:
            kind, handle = fdmap.get(fd, ("gone", None))
            if kind == "events":
                self._read_events(handle)
            elif kind == "tasks":
                if handle.flush_tasks():
                    self._watch_backlogs()
            elif kind == "queue":
                self._drain_queue()
            elif kind == "sentinel":
                deaths.append(handle)
            elif kind == "store":
                self._store_died()
            elif kind == "wake":
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
        for handle in deaths:  # after reading, so nothing the engine sent is lost
            self._engine_died(handle)

    def _read_events(self, handle: EngineHandle) -> None:
        if not handle.alive:
            return
        try:
            frames = handle.event_reader.read_frames()
        except OSError:
            return  # the engine died; its sentinel reports it
        for frame in frames:
            self._on_event(handle, pickle.loads(frame))

    def _drain_queue(self) -> None:
        for frame in self.queue.read_frames():
            try:
                message = loads(frame, what="a publication", on_release=self._released.append)
                if message[0] == "spilled":
                    ref = message[1]
                    try:
                        spilled = bytes(sharedmem.attach(ref))
                        message = loads(spilled, what="a publication", on_release=self._released.append)
                    finally:
                        sharedmem.unlink(ref.name)
            except (SerializationError, OSError):
                continue  # a publication the client cannot load is dropped, never fatal
            kind, seq = message[0], message[1]
            record = self.records.get(seq)
            if record is None or record.result is None:
                continue
            if kind == "data":
                record.pubs_applied += 1
                record.last_pubseq = message[3]
                record.result._apply_data(record.index, message[4])
                if record.result._watchers:
                    self._to_notify.append(record.result)
                self._maybe_complete(record)
            elif kind == "progress":
                record.progress = (message[3], message[4])
                if record.result._watchers:
                    self._to_notify.append(record.result)

    def _on_event(self, handle: EngineHandle, event: Tuple[Any, ...]) -> None:
        kind, seq = event[0], event[1]
        if kind == "ready":
            handle.ready = self._room_changed = True
            return
        record = self.records.get(seq)
        if kind == "result":
            _, _, status, payload, started, completed, stdout, stderr, pubs = event
            if record is None:
                if status == "ok":
                    for ref in segments_of(payload):
                        if ref.pooled:
                            self._released.append(ref)
                        else:
                            sharedmem.unlink(ref.name)
                return
            record.received = time.time()
            record.started, record.completed, record.stdout, record.stderr = started, completed, stdout, stderr
            mean = self.mean_task_seconds
            self.mean_task_seconds = completed - started if mean is None else mean + (completed - started - mean) / 8
            if status == "value":  # builtin scalars, sent inline
                record.value, record.status = payload, "ok"
            elif status == "ok":
                try:
                    record.value = loads(
                        payload, what=f"the result of task {record.msg_id}", on_release=self._released.append
                    )
                    record.status = "ok"
                except SerializationError as exc:
                    record.status = "error"
                    record.error = RemoteError("SerializationError", str(exc), "", _info(handle, record))
            else:
                ename, evalue, tb = payload
                record.status, record.error = "error", RemoteError(ename, evalue, tb, _info(handle, record))
            record.pubs_expected = pubs
            if record.pubs_applied < record.pubs_expected:
                self._drain_queue()  # they were written before the result: they are there
            self._maybe_complete(record, force=True)
        elif kind == "aborted" and record is not None:
            record.status, record.error = "aborted", TaskAborted(record.msg_id, handle.id)
            record.pubs_expected = 0
            self._maybe_complete(record)

    def _maybe_complete(self, record: TaskRecord, force: bool = False) -> None:
        if record.done or record.pubs_expected is None:
            return
        if record.pubs_applied < record.pubs_expected and not force:
            return
        self._complete(record)

    def _complete(self, record: TaskRecord) -> None:
        record.done = True
        self._dirty = self._room_changed = True
        result, record.result = record.result, None  # no cycle: the array can die with its result
        with self.state_lock:
            self.records.pop(record.seq, None)
            handle = self.engines.get(record.engine_id)
            if handle is not None:
                handle.pending.discard(record.seq)
            last = result is not None and result._record_done(record)
        if last and result is not None:
            self._to_finish.append(result)

    def fail(self, record: TaskRecord, error: RemoteError, status: str = "error") -> None:
        """Finish a record that will never get its result."""
        if record.done:
            return
        record.status, record.error = status, error
        record.pubs_expected = record.pubs_applied
        self._complete(record)

    # -- deaths ---------------------------------------------------------------------------
    def _engine_died(self, handle: EngineHandle) -> None:
        if not handle.alive:
            return
        self._read_events(handle)  # whatever it finished sending
        self._drain_queue()
        with handle.task_lock:
            handle.outbox.clear()
        self._room_changed = True  # tasks queued for this engine alone must now fail
        self.spin_hint.forget(handle.id)
        with self.state_lock:
            handle.alive = False
            self._version += 1
            pending = [self.records[s] for s in sorted(handle.pending) if s in self.records]
        handle.process.join(timeout=1.0)
        handle.exitcode = handle.process.exitcode
        self._recover_from_store(handle, pending)
        for record in pending:
            self.fail(record, EngineError(handle.id, handle.exitcode, record.msg_id))
        sharedmem.sweep(self.cluster_id, handle.pid)

    def _recover_from_store(self, handle: EngineHandle, pending: List[TaskRecord]) -> None:
        """Apply the durable latest state if it is fresher than what the queue delivered."""
        if self.store is None or self.store_error is not None or not pending:
            return
        latest = self.store.latest(handle.id)
        if latest is None:
            return
        seq, pubseq, state = latest
        for record in pending:
            if record.seq == seq and pubseq > record.last_pubseq and record.result is not None:
                record.result._apply_data(record.index, state)
                record.last_pubseq = pubseq
                self._to_notify.append(record.result)

    def attach_store(self, store: Any) -> None:
        """The Manager is up: watch it and give its dict to every engine."""
        with self.state_lock:
            self.store = store
            self._version += 1
            handles = [h for h in self.engines.values() if h.alive]
        for h in handles:
            h.send_control(("store", store.dict))
        self.wake()

    def _store_died(self) -> None:
        if self.store is None or self.store_error is not None:
            return
        code = self.store.exitcode()
        self.store_error = (
            f"the cluster's Manager process (pid {self.store.pid}) died with exit status {code}; "
            "publish_data cannot keep the durable copy of published data: close this client and start a new one"
        )
        with self.state_lock:
            self._version += 1
            handles = [h for h in self.engines.values() if h.alive]
        for h in handles:
            h.send_control(("store-lost", self.store_error))

    def fail_all(self, make_error: Callable[[TaskRecord], RemoteError]) -> None:
        """Fail every pending record (used by close())."""
        with self.state_lock:
            pending = list(self.records.values())
        for record in pending:
            self.fail(record, make_error(record))

    def close(self) -> None:
        self.closed = True
        self.wake()
        with self._leaders_lock:
            self._leaders_changed.notify_all()  # the drain thread may be standing aside
        with self.read_lock:
            self.fail_all(lambda r: ClientClosedError(f"the client was closed while task {r.msg_id} was pending"))
        self.run_callbacks()

    def close_fds(self) -> None:
        with self.read_lock:
            self.fds_closed = True
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


def _info(handle: EngineHandle, record: TaskRecord) -> Dict[str, Any]:
    """Where a failed task ran, for its RemoteError."""
    return {"engine_id": handle.id, "engine_pid": handle.pid, "msg_id": record.msg_id}


def _take_all(queue: Deque[Any]) -> Iterator[Any]:
    """Pop items until the deque is empty; safe while other threads pop too."""
    while True:
        try:
            yield queue.popleft()
        except IndexError:
            return


__all__ = ["Router"]
