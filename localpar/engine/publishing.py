"""The engine's side of ``publish_data``: one task's publications, and their durable copy.

    publish_data(d) ─► TaskContext.publish ─► one atomic frame on the publication queue
                              │                (Data; Spilled if too big; coalesced in
                              │                 `pending` while the pipe is full)
                              └─► StoreWriter.offer ─► its own thread ─► Manager dict

Ownership: everything a TaskContext holds, and the engine's control-pipe reader,
are guarded by the engine lock (``Engine.lock``), because a task may publish from
several threads.  A thread belongs to the task during which it was started: one
left running by an earlier task cannot publish into a later task's data.  When
the task returns, the engine closes its context under the lock, flushing what the
full pipe held back, and only then writes the result with the count of Data
frames sent: the client completes the task once it has applied that many.

Shared memory full: a Data frame too big for the queue cannot be spilled, so it
goes whole on the engine's own event pipe, big buffers in it (with a one-time
warning, see ``sharedmem``), and so do the task's later Data frames.  Order is
kept: the task's earlier queue frames were written before it, and the collector
drains the queue before applying a Data from an event pipe; none come after it.
"""

from __future__ import annotations

import pickle
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from ..errors import DataStoreError, SerializationError
from ..wire import messages, sharedmem
from ..wire.messages import Data, Progress, Spilled
from ..wire.pubdata import dumps_data
from ..wire.pubqueue import MAX_PAYLOAD
from ..wire.serialization import dumps_inline, find_unpicklable

if TYPE_CHECKING:
    from .loop import Engine

STORE_SYNC_MIN_INTERVAL = 0.2  # seconds between two Manager-dict writes of one engine
STORE_MAX_VALUE_BYTES = 1 << 20  # bigger published values are not copied into the Manager
CONTROL_POLL_INTERVAL = 0.005  # seconds between two looks at the control pipe from publish_data


class TaskContext:
    """What ``publish_data`` needs to know about the running task."""

    def __init__(self, engine: Engine, seq: int) -> None:
        self.engine = engine
        self.seq = seq
        self.state: Dict[str, Any] = {}  # merged data, for the durable copy
        self.pending: Optional[Dict[str, Any]] = None  # not yet in the queue: the pipe was full
        self.sent = 0  # Data frames in the queue
        self.pubseq = 0
        self.closed = False
        self.on_events = False  # Data goes on the event pipe from now on (shared memory was full)
        self.older_threads: Set[Optional[int]] = {t.ident for t in threading.enumerate()} - {engine.main_ident}

    def publish(self, data: Dict[str, Any]) -> None:
        """Merge `data` into the task's data and send it (the engine lock is held)."""
        engine = self.engine
        if self.closed:
            raise RuntimeError(
                f"publish_data after task {self.seq} returned: a thread it left running cannot publish any more"
            )
        if threading.get_ident() in self.older_threads:
            raise RuntimeError(
                "publish_data from a thread that an earlier task started: its data cannot be told apart "
                "from this task's; publish from the task's own thread or from threads it starts"
            )
        now = time.monotonic()
        if now >= engine.next_control_poll:  # a store handle or loss, segment releases: no hurry
            engine.poll_control()
            engine.next_control_poll = now + CONTROL_POLL_INTERVAL
        if engine.store.lost:
            raise DataStoreError(engine.store.lost)
        self.pubseq += 1  # counts calls: a coalesced state carries the number of the latest
        delta = data  # pickled right away: later changes by the caller do not leak in
        if self.pending is not None:
            self.pending.update(data)
            delta = self.pending
        frame, segments, whole = self._encode_data(delta)
        if whole is not None:  # no room in shared memory to spill it: the event pipe takes it whole
            engine.send(whole)
            self.sent += 1
            self.pending = None
        elif engine.queue.try_put(frame):
            self.sent += 1
            self.pending = None
        else:  # the client is behind: keep the latest state here, send it later
            for ref in segments:
                _give_back(engine, ref)
            self.pending = delta if delta is not data else dict(data)
        self.state.update(data)
        engine.store.offer(self.seq, self.pubseq, self.state)

    def report_progress(self, done: int, total: int) -> None:
        frame = messages.encode(Progress(self.seq, self.engine.id, done, total))
        self.engine.queue.try_put(frame)  # a hint: dropped, not queued, if the pipe is full

    def close(self) -> int:
        """The task returned: send what the full pipe held back; returns the Data frames sent."""
        self.closed = True
        if self.pending is not None:
            frame, _, whole = self._encode_data(self.pending)
            if whole is not None:
                self.engine.send(whole)
            else:
                self.engine.queue.put(frame)
            self.sent += 1
            self.pending = None
        if self.pubseq:
            self.engine.store.offer(self.seq, self.pubseq, self.state)
        return self.sent

    def _encode_data(self, delta: Dict[str, Any]) -> Tuple[bytes, List[sharedmem.SegmentRef], Optional[Data]]:
        """The queue frame for `delta` and its segments; or the Data message to send whole on the
        event pipe, once a frame too big for the queue found no room in shared memory to spill."""
        engine = self.engine
        cluster = engine.spec.cluster_id
        try:
            body, segments = dumps_data(delta, cluster, what="the published data", pool=engine.pool)
        except SerializationError:
            culprit = find_unpicklable((f"published value {k!r}", v) for k, v in delta.items())
            raise SerializationError(f"cannot pickle {culprit}") from None
        data = Data(self.seq, engine.id, self.pubseq, body)
        if self.on_events:
            return b"", segments, data
        frame = messages.encode(data)
        if len(frame) > MAX_PAYLOAD:  # too big for one atomic write: spill it
            try:
                ref = sharedmem.export(cluster, memoryview(frame))
            except sharedmem.SharedMemoryFull as exc:
                sharedmem.warn_full(exc)
                self.on_events = True
                return b"", segments, data
            frame = messages.encode(Spilled(self.seq, engine.id, self.pubseq, ref))
            segments = [*segments, ref]
        return frame, segments, None


def _give_back(engine: Engine, ref: sharedmem.SegmentRef) -> None:
    if ref.pooled:
        engine.pool.release(ref.name)
    else:
        sharedmem.unlink(ref.name)


class StoreWriter:
    """Keeps the Manager dict's copy of this engine's latest data fresh, off the task's path.

    Its own thread writes the newest offered state, at most every
    ``STORE_SYNC_MIN_INTERVAL``: a stopped or unreachable Manager then blocks that
    thread only, never ``publish_data``.  `_latest` and `_proxy` are guarded by `_wake`.
    """

    def __init__(self, engine_id: int) -> None:
        self.engine_id = engine_id
        self.lost: Optional[str] = None  # why publish_data must fail (DataStoreError)
        self._wake = threading.Condition(threading.Lock())
        self._latest: Optional[Tuple[int, int, Dict[str, Any]]] = None
        self._proxy: Optional[bytes] = None
        self._thread: Optional[threading.Thread] = None

    def use(self, proxy: bytes) -> None:
        """The client sent the Manager's dict proxy, pickled: start writing to it."""
        with self._wake:
            self._proxy = proxy
            self._wake.notify()
        if self._thread is None:
            thread = threading.Thread(target=self._run, name="localpar-store-writer", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # e.g. too many threads for this user
                from ..processes.limits import is_process_limit, limit_reached

                why = f"{limit_reached()}; {exc}" if is_process_limit(exc) else str(exc)
                self.lost = f"the engine could not start the thread that writes the Manager dict ({why})"
                return
            self._thread = thread

    def offer(self, seq: int, pubseq: int, state: Dict[str, Any]) -> None:
        """The newest state of task `seq`; an older one not yet written is dropped."""
        if self._proxy is None:
            return
        with self._wake:
            self._latest = (seq, pubseq, dict(state))
            self._wake.notify()

    def _run(self) -> None:
        with self._wake:
            while self._proxy is None:
                self._wake.wait()
            proxy = self._proxy
        try:
            store = pickle.loads(proxy)  # connects to the Manager: only this thread may wait for it
        except Exception as exc:
            self.lost = f"the cluster's Manager process is unreachable ({type(exc).__name__}: {exc})"
            return
        while True:
            with self._wake:
                while self._latest is None:
                    self._wake.wait()
                (seq, pubseq, state), self._latest = self._latest, None
            try:
                blob = dumps_inline(durable_part(state))
            except SerializationError:
                continue  # publish_data pickled it already; a value changed since is not worth a failure
            try:
                store[self.engine_id] = (seq, pubseq, blob)
            except Exception as exc:
                self.lost = f"the cluster's Manager process is unreachable ({type(exc).__name__}: {exc})"
                return
            time.sleep(STORE_SYNC_MIN_INTERVAL)  # pacing, not waiting: newer states coalesce meanwhile


def durable_part(state: Dict[str, Any]) -> Dict[str, Any]:
    """What the Manager dict keeps: big buffers would cost a full copy per write, so
    values over ``STORE_MAX_VALUE_BYTES`` stay out (the client has them already)."""
    return {k: v for k, v in state.items() if _nbytes(v) <= STORE_MAX_VALUE_BYTES}


def _nbytes(value: Any) -> int:
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    size = getattr(value, "nbytes", 0)
    return size if isinstance(size, int) else 0
