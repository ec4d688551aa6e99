"""The collector: the client's one reader, in a thread of its own.

    engine i ── event pipe i ─────┐                    ┌─► TaskRecord: value or error,
    engine i ── pidfd i (death) ──┤                    │   times; then complete
    all engines ── pub queue ─────┼─► Collector._run ──┼─► AsyncResult.data (dict.update),
                                  │                    │   TaskRecord.output (ar.stdout)
    Manager ── pidfd (death) ─────┤   (poll, apply)    ├─► EngineError for a dead engine's
    task/control pipe i, if full ─┤                    │   pending tasks; DataStoreError
    Ledger.doorbell ──────────────┘                    └─► balancer: engines have room,
    (deadlines: the poll's timeout)                        or handed tasks back (Reclaimed);
                                                           a waiting task's timeout came

Callers never read: they wait on their AsyncResult (a Future), or in
``Ledger.wait_until``.  So every channel has exactly one reader, and a
completion and the wake of its waiters are one step (``set_result``).  The
hand-off costs thread wake-ups; a caller in ``get()`` watches its Future's
public state for up to ``spin.SPIN_SECONDS`` (yielding the CPU and the GIL to
this thread) before it blocks on it, and engines spin between tasks while a
caller waits (``SpinHint``), so this thread's wake-up by the result is the only
one on a short round trip.

Ordering: an engine writes a task's publications (Data, and Output: what it
printed) before its result, and the result says how many it wrote; a record
completes only once that many are applied.  Within a batch, event pipes are read before the queue, so nothing but
that count keeps ``get()`` from returning before ``ar.data`` is final.

Deaths come from the process (a pidfd), not from a pipe that the engine's own
children may hold open.  What a dead engine sent is applied first; then its
pending tasks fail with ``EngineError``, after its last state is recovered from
the Manager dict if that is fresher (see ``datastore``).

User callbacks (``on_data`` watchers, Future done-callbacks) run in the thread that completes
the result or applies the data: this one for every task that reached an engine, or the thread
that cancels, aborts or fails a task that never did (``Ledger.fail``, the balancer's drop).  They
may submit, but must not wait for a result (waiting from this thread raises; see
``Ledger.check_can_wait``).
"""

from __future__ import annotations

import collections
import logging
import select
import signal
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, List, Optional, Tuple, Union

from .. import chaos
from ..errors import ClientClosedError, EngineError, KernelError, RemoteError, SerializationError, TaskAborted
from ..processes import limits
from ..processes.lifeline import exit_status
from ..wire import messages, sharedmem
from ..wire.execreply import ExecuteReply
from ..wire.messages import (
    Aborted,
    Data,
    Display,
    Output,
    Progress,
    Ready,
    Reclaimed,
    Result,
    Spilled,
    StoreLost,
    UseStore,
)  # fmt: skip
from ..wire.pubdata import unpieced
from ..wire.pubqueue import PublicationQueue
from ..wire.serialization import has_segments, loads, segments_of
from .handles import EngineHandle, TaskRecord
from .ledger import Ledger

if TYPE_CHECKING:
    from .datastore import DataStore
    from .dependencies import Deadlines

_logger = logging.getLogger("localpar")

RECOVERY_TIMEOUT = 1.0  # seconds to wait for the Manager's copy of a dead engine's data


class Collector:
    """The client's one reader: a thread that polls every engine's event pipe and pidfd, the
    publication queue and the doorbell, applies what arrives and completes tasks."""

    def __init__(self, cluster_id: str, ledger: Ledger, queue: PublicationQueue) -> None:
        self.cluster_id = cluster_id
        self.ledger = ledger
        self.queue = queue
        self.on_room: Optional[Callable[[], None]] = None  # the load balancer's hook
        self.on_reclaimed: Optional[Callable[[EngineHandle, List[int]], None]] = None  # and its other one
        # The client's hook for a dead engine: ends its descendants and may replace it,
        # in a helper thread (it must return at once: this thread reads for everyone).
        self.on_death: Optional[Callable[[EngineHandle], None]] = None
        # Asked first, before the dead engine's tasks fail: what their EngineError adds (that
        # the engine will not be replaced), or None.  It must return at once too.
        self.death_note: Optional[Callable[[EngineHandle], Optional[str]]] = None
        # The client's hook for the cluster's first publication: it starts the Manager then,
        # so that a cluster that never publishes never starts one.  Called once, then dropped.
        self.on_first_data: Optional[Callable[[], None]] = None
        # The timeouts of load-balanced tasks (``dependencies.Deadlines``): this thread polls
        # with the nearest as timeout and fires what is due.  Set before start.
        self.deadlines: Optional[Deadlines] = None
        self.store: Optional[DataStore] = None  # set under ledger.lock
        self.store_error: Optional[str] = None  # why the Manager is gone
        # Engine segments whose arrays the client dropped; appended from GC
        # finalizers (any thread, any moment), sent to their engines by this thread.
        self._released: Deque[sharedmem.SegmentRef] = collections.deque()
        self._stopping = False
        self._room = False  # a task ended or an engine came or went: the balancer looks again
        self._fdmap: Dict[int, Tuple[str, Any]] = {}
        self._poller = select.poll()
        self._version = -1
        self.thread = threading.Thread(target=self._run, name=f"localpar-collector-{cluster_id}", daemon=True)
        ledger.collector_thread = self.thread

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Fail what is pending with ClientClosedError and end the thread (the ledger is closed)."""
        self._stopping = True
        self.ledger.doorbell.ring()
        if threading.current_thread() is self.thread or self.thread.ident is None:  # in a callback, or never started
            self._fail_all(lambda r: ClientClosedError(f"the client was closed while task {r.msg_id} was pending"))
        else:
            self.thread.join(timeout=10)

    def release(self, ref: sharedmem.SegmentRef) -> None:
        """An array on engine segment `ref` is gone (called from GC finalizers)."""
        self._released.append(ref)
        self.ledger.doorbell.ring()

    # -- the loop -------------------------------------------------------------------------
    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # Ctrl-C is the main thread's
        ledger = self.ledger
        try:
            while not self._stopping:
                if self._version != ledger.version:
                    self._watch()
                if chaos.ENABLED:
                    chaos.pause()
                ready = self._poller.poll(-1 if self.deadlines is None else self.deadlines.poll_timeout())
                self._handle(ready)
                if self.deadlines is not None:
                    self.deadlines.fire()
                self._after_batch()
            why = "the client was closed"
        except BaseException as exc:  # a bug here must not leave futures pending forever
            _logger.exception("localpar's collector thread failed; the client is closed")
            why = f"the client's collector thread failed ({type(exc).__name__}: {exc})"
            ledger.close()
        self._fail_all(lambda r: ClientClosedError(f"{why} while task {r.msg_id} was pending"))

    def _watch(self) -> None:
        """Rebuild the poll set from the ledger's live engines."""
        ledger = self.ledger
        fdmap: Dict[int, Tuple[str, Any]] = {ledger.doorbell.fd: ("doorbell", None)}
        with ledger.lock:
            self._version = ledger.version
            handles = [h for h in ledger.engines.values() if h.alive]
            store = self.store if self.store_error is None else None
        for h in handles:  # events before the queue: see the module docstring
            fdmap[h.events.fileno()] = ("events", h)
        fdmap[self.queue.reader_fd] = ("queue", None)
        for h in handles:
            fdmap[h.death_fd] = ("death", h)
            for kind, outbox in (("tasks", h.tasks), ("control", h.control)):
                if outbox.backlog:
                    fdmap[outbox.fd] = (kind, h)
        if store is not None:
            fdmap[store.death_fd] = ("store", None)
        poller = select.poll()
        for fd, (kind, _) in fdmap.items():
            poller.register(fd, select.POLLOUT if kind in ("tasks", "control") else select.POLLIN)
        self._poller, self._fdmap = poller, fdmap

    def _handle(self, ready: List[Tuple[int, int]]) -> None:
        fdmap = self._fdmap  # poll lists descriptors in the order _watch registered them
        for fd, _ in ready:
            if self._stopping:  # closed by a callback or finalizer run in this thread
                return
            kind, handle = fdmap.get(fd, ("gone", None))
            if kind == "events":
                self._read_events(handle)
            elif kind == "queue":
                self._drain_queue()
            elif kind == "death":
                self._engine_died(handle)  # after its events: whatever it sent is applied first
            elif kind in ("tasks", "control"):
                if (handle.tasks if kind == "tasks" else handle.control).flush():
                    self.ledger.watch_again()
            elif kind == "store":
                self._store_died()
            elif kind == "doorbell":
                self.ledger.doorbell.clear()

    def _after_batch(self) -> None:
        if self._released:
            self._send_releases()
        if self._room:
            self._room = False
            if self.on_room is not None:
                self.on_room()
        self.ledger.notify_waiters()

    # -- engine events ------------------------------------------------------------------------
    def _read_events(self, handle: EngineHandle) -> None:
        if not handle.alive:
            return
        try:
            frames = handle.event_reader.read_frames()
        except OSError:
            return  # the engine died; its pidfd reports it
        for frame in frames:
            event = messages.decode(frame)
            if type(event) is Result:
                self._on_result(handle, event)
            elif type(event) is Data:  # sent whole: shared memory was full (see publishing)
                self._drain_queue()  # the engine's earlier publications are in the queue already
                self._on_data(event)
            elif type(event) is Display:  # the same, for a display (see output)
                self._drain_queue()
                self._on_output(event)
            elif type(event) is Ready:
                with self.ledger.lock:
                    handle.ready = True
                self._room = True
            elif type(event) is Reclaimed:
                if self.on_reclaimed is not None:
                    self.on_reclaimed(handle, event.seqs)
            elif type(event) is Aborted:
                records = self.ledger.records
                for seq in event.seqs:
                    record = records.get(seq)
                    if record is not None:
                        record.pubs_expected = 0
                        self.ledger.fail(record, TaskAborted(record.msg_id, handle.id), status="aborted")
                for seq in event.started:
                    record = records.get(seq)
                    if record is not None:
                        record.abort_refused = True  # a cancel() waiting for the answer sees it
                self._room = True

    def _on_result(self, handle: EngineHandle, result: Result) -> None:
        record = self.ledger.records.get(result.seq)
        if record is None:  # completed already (closed, aborted): free what it brought
            for ref in segments_of(result.payload) if result.status == "ok" else []:
                if ref.pooled:
                    self._released.append(ref)
                else:
                    sharedmem.unlink(ref.name)
            return
        record.received = time.time()
        record.started, record.completed = result.started, result.completed
        ran = result.completed - result.started
        mean = self.ledger.mean_task_seconds
        self.ledger.mean_task_seconds = ran if mean is None else mean + (ran - mean) / 8
        if result.status == "value":  # builtin scalars, sent inline
            record.value, record.status = result.payload, "ok"
        elif result.status == "ok":
            try:
                what = f"the result of task {record.msg_id}"
                record.value = _guarded_loads(result.payload, what, self.release)
                record.status = "ok"
                record.pinned = record.pinned or has_segments(result.payload)
            except SerializationError as exc:
                record.status = "error"
                record.error = RemoteError("SerializationError", str(exc), "", _where(handle, record))
        else:
            ename, evalue, tb = result.payload
            record.status, record.error = "error", RemoteError(ename, evalue, tb, _where(handle, record))
        record.pubs_expected = result.publications
        self._room = True
        self._complete_if_all_data(record)

    def _complete_if_all_data(self, record: TaskRecord) -> None:
        """The ordering guarantee: a task is done once every publication it made (Data and
        Output) is applied."""
        if record.pubs_expected is not None and record.pubs_applied >= record.pubs_expected:
            if isinstance(record.value, ExecuteReply):  # its output is all applied now
                record.value.fill(
                    engine_id=record.engine_id, msg_id=record.msg_id, stdout=record.stdout,
                    stderr=record.stderr, outputs=record.outputs,
                )  # fmt: skip
            if chaos.ENABLED:
                chaos.pause()
            self.ledger.complete(record)

    # -- publications ---------------------------------------------------------------------------
    def _drain_queue(self) -> None:
        for frame in self.queue.read_frames():
            message = messages.decode(frame)
            if type(message) is Spilled:
                message = self._unspill(message)
            if type(message) is Output or type(message) is Display:
                self._on_output(message)
            elif type(message) is Data:
                self._on_data(message)
            elif type(message) is Progress:
                record = self.ledger.records.get(message.seq)
                if record is not None and record.result is not None:
                    record.progress = (message.done, message.total)
                    record.result.notify_data()

    def _on_output(self, output: Union[Output, Display]) -> None:
        """A piece of what a task printed, or one of its displays: appended to its record
        (``ar.stdout``, ``ar.outputs`` grow), in the order the task made them."""
        record = self.ledger.records.get(output.seq)
        if record is None or record.result is None:
            return  # its task has failed already (aborted, dead engine, closed client)
        piece: Tuple[str, Any]
        if isinstance(output, Display):
            piece = ("display", output.content)
        else:
            piece = (output.name, output.text)
        if isinstance(record.output, list):
            record.output.append(piece)
        else:  # the first piece
            record.output = [piece]
        record.pubs_applied += 1
        self._complete_if_all_data(record)

    def _unspill(self, spilled: Spilled) -> Any:
        """The Data or Display message a segment carries; a Data with no delta if the segment
        cannot be read (a display is then a text one saying so)."""
        try:
            return messages.decode(sharedmem.attach(spilled.ref))
        except OSError as exc:  # it still counts, so that its task completes
            _logger.warning("task %s: a publication was lost: %s", spilled.seq, exc)
            if spilled.pubseq == 0:  # a display (see messages.Spilled)
                lost = {"data": {"text/plain": f"<a display was lost: {exc}>"}, "metadata": {}, "transient": {}}
                return Display(spilled.seq, spilled.engine_id, lost)
            return Data(spilled.seq, spilled.engine_id, spilled.pubseq, b"")
        finally:
            sharedmem.unlink(spilled.ref.name)

    def _on_data(self, data: Data) -> None:
        if self.on_first_data is not None:
            start_store, self.on_first_data = self.on_first_data, None
            start_store()
        record = self.ledger.records.get(data.seq)
        if record is None or record.result is None:
            _logger.warning("a publication of engine %s arrived after its task had ended; dropped", data.engine_id)
            return
        record.pubs_applied += 1
        record.last_pubseq = data.pubseq
        if not data.delta:  # lost on the way (see _unspill)
            record.data_errors += (f"publication {data.pubseq} was lost",)
            self._complete_if_all_data(record)
            return
        try:
            delta = _guarded_loads(data.delta, "a publication", self.release)
        except SerializationError as exc:  # counted all the same: the task must still complete
            _logger.warning("task %s: %s", record.msg_id, exc)
            record.data_errors += (str(exc),)
        else:
            delta, dropped = unpieced(delta)  # values it could not unpickle are left out, the rest applied
            if dropped:
                for why in dropped:
                    _logger.warning("task %s: %s", record.msg_id, why)
                record.data_errors += tuple(dropped)
            record.pinned = record.pinned or has_segments(data.delta)
            record.result.apply_data(record.index, delta)
        self._complete_if_all_data(record)

    # -- deaths -----------------------------------------------------------------------------------
    def _engine_died(self, handle: EngineHandle) -> None:
        if not handle.alive:
            return
        self._read_events(handle)  # whatever it finished sending
        self._drain_queue()
        pending = self.ledger.engine_died(handle)
        self._room = True  # tasks queued for this engine alone must now fail
        handle.exitcode = exit_status(handle.process, handle.death_fd)
        # It has exited: reap it without waiting.  A join would wait on multiprocessing's
        # sentinel, which what the engine forked holds open: the report would wait too.
        handle.process.exitcode  # noqa: B018  (the property reaps: waitpid WNOHANG)
        if not handle.ready and handle.death_reason is None:  # it died starting: was it the ulimit -u?
            handle.death_reason = limits.process_limit_note()
        self._recover_from_store(handle, pending)
        note = self.death_note(handle) if self.death_note is not None else None  # replaced? when?
        if self.on_death is not None:  # before its tasks fail: a call made on their error finds the replacement coming
            self.on_death(handle)
        reason = "; ".join(r for r in (handle.death_reason, note) if r) or None
        closing = self.ledger.closed  # close() terminated it (a busy engine) before stopping this thread
        for record in pending:
            if closing:
                error: KernelError = ClientClosedError(f"the client was closed while task {record.msg_id} was pending")
            else:
                error = EngineError(handle.id, handle.exitcode, record.msg_id, reason)
            self.ledger.fail(record, error)
        handle.close()
        sharedmem.sweep_made_by([handle.pid])  # in any cluster: see resources.end_tree

    def _recover_from_store(self, handle: EngineHandle, pending: List[TaskRecord]) -> None:
        """Apply the Manager's copy of the engine's last data if it is fresher than what arrived."""
        store = self.store
        if store is None or self.store_error is not None or not pending:
            return
        latest = store.latest(handle.id, timeout=RECOVERY_TIMEOUT)
        if latest is None:
            return
        seq, pubseq, state = latest
        for record in pending:
            if record.seq == seq and pubseq > record.last_pubseq and record.result is not None:
                record.result.apply_data(record.index, state)
                record.last_pubseq = pubseq

    def attach_store(self, store: DataStore) -> None:
        """The Manager is up (called by the thread that started it): watch it, give it to every engine."""
        with self.ledger.lock:
            self.store = store
            self.ledger.version += 1
        self.ledger.doorbell.ring()
        for h in self.ledger.live_handles():
            h.send_control(UseStore(store.proxy_bytes))

    def _store_died(self) -> None:
        store = self.store
        if store is None or self.store_error is not None:
            return
        reason = (
            f"the cluster's Manager process (pid {store.pid}) died with exit status {store.exitcode()}; "
            "publish_data cannot keep the durable copy of published data: close this client and start a new one"
        )
        with self.ledger.lock:
            self.store_error = reason
            self.ledger.version += 1
        for h in self.ledger.live_handles():
            h.send_control(StoreLost(reason))

    # -- housekeeping -----------------------------------------------------------------------------
    def _send_releases(self) -> None:
        """Tell engines which of their segments they may reuse."""
        by_owner: Dict[str, List[str]] = {}
        while self._released:
            ref = self._released.popleft()
            owner = ref.name.rsplit("-", 2)[-2]  # localpar-<cluster>-<pid>-<n>
            by_owner.setdefault(owner, []).append(ref.name)
        by_pid = {str(h.pid): h for h in self.ledger.live_handles()}
        for pid, names in by_owner.items():
            handle = by_pid.get(pid)
            if handle is not None:
                handle.send_control(messages.Release(names))

    def _fail_all(self, make_error: Callable[[TaskRecord], KernelError]) -> None:
        for record in self.ledger.pending_records():
            self.ledger.fail(record, make_error(record))
        self.ledger.notify_waiters()


def _where(handle: EngineHandle, record: TaskRecord) -> Dict[str, Any]:
    """Where a failed task ran, for its RemoteError: ipyparallel's ``engine_info``."""
    method = getattr(record.result, "method", "apply")
    return {"engine_uuid": handle.uuid, "engine_id": handle.id, "method": method}


def _guarded_loads(payload: bytes, what: str, on_release: Callable[[sharedmem.SegmentRef], None]) -> Any:
    """``loads`` in the collector thread: whatever an object's unpickling raises, SystemExit
    and KeyboardInterrupt included (a ``__reduce__`` or ``__setstate__`` of the user's), fails
    that one value as a SerializationError; the collector, and every other task, go on."""
    try:
        return loads(payload, what=what, on_release=on_release)
    except SerializationError:
        raise
    except BaseException as exc:  # not Exception: loads has wrapped those already
        raise SerializationError(f"cannot unpickle {what}: {type(exc).__name__}: {exc}") from exc
