"""The engine process: a loop that runs one task at a time, in arrival order.

    task pipe ──► recv ──► run f(*args, **kwargs) ──► result pipe (value or error,
    (from client)               │                          with stdout, stderr, times
                                │                          and the publication count)
                                └── publish_data ──► publication queue (shared, atomic
                                                     frames) + Manager dict (coalesced)
    control pipe ──► abort lists, the data store's handle; polled before each task
                     and at each publication, so never blocking the task.

An engine lives in its own session, so a terminal's Ctrl-C does not reach it;
``Client.interrupt`` sends SIGINT, which raises KeyboardInterrupt only inside a
running task.  A daemon thread watches the lifeline and exits when the client dies.
"""

from __future__ import annotations

import io
import os
import pickle
import select
import signal
import struct
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple

from . import compat, datapub, lifeline, namespace, sharedmem
from .errors import DataStoreError, SerializationError
from .framing import FrameReader, write_frame
from .pubqueue import MAX_PAYLOAD, PublicationWriter
from .serialization import CALL_FUNCTION_SIZE, SCALARS_ONLY, dumps, find_unpicklable, loads, plain_data
from .spin import SpinHint

TASK_HEADER = struct.Struct("<Q")  # the task's sequence number, then the call (serialization.dumps_call)
STOP = b"stop"
STORE_SYNC_MIN_INTERVAL = 0.2  # seconds between two Manager-dict writes of one task
STORE_MAX_VALUE_BYTES = 1 << 20  # bigger published values are not copied into the Manager
CONTROL_POLL_INTERVAL = 0.005  # seconds between two looks at the control pipe from publish_data


class EngineSpec(NamedTuple):
    """All an engine process needs; picklable for forkserver and spawn starts."""

    engine_id: int
    cluster_id: str
    authkey: bytes
    tasks: Connection  # client -> engine, frames of TASK_HEADER + call (see framing)
    control: Connection  # client -> engine, pickled control messages
    events: Connection  # engine -> client, frames of pickled event tuples (see framing)
    publications: Connection  # write end of the shared publication queue
    lifeline: Connection  # read end of the client's lifeline
    spin_hint: str  # the segment of the client's SpinHint
    inherited: Tuple[int, ...]  # client-side fds a forked child must close


def run_engine(spec: EngineSpec) -> None:
    """Entry point of an engine process."""
    lifeline.close_inherited(spec.inherited)
    os.setsid()  # leave the terminal's process group: Ctrl-C is the client's
    import multiprocessing

    multiprocessing.current_process().authkey = spec.authkey
    compat.install()  # ipyparallel's and IPython's datapub names reach localpar's publish_data
    engine = Engine(spec)
    signal.signal(signal.SIGINT, engine.on_sigint)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the client during start
    lifeline.watch(spec.lifeline, engine.on_client_death)
    try:
        engine.serve()
    finally:
        engine.pool.close()


class Engine:
    def __init__(self, spec: EngineSpec) -> None:
        self.id = spec.engine_id
        self.spec = spec
        self.queue = PublicationWriter(spec.publications)
        self.pool = sharedmem.SegmentPool(spec.cluster_id)
        self.store: Any = None  # the Manager's dict proxy, once the client sends it
        self.store_lost: Optional[str] = None
        self.aborted: Set[int] = set()
        self.namespace: Dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.running = False
        self.last_task: Optional[TaskContext] = None
        self.next_control_poll = 0.0  # publish_data looks at the control pipe from then on
        self._control_ready = select.poll()
        self._control_ready.register(spec.control.fileno(), select.POLLIN)
        self._events_fd = spec.events.fileno()
        self.spin_hint = SpinHint(spec.spin_hint)
        self._task_ready = select.poll()
        self._task_ready.register(spec.tasks.fileno(), select.POLLIN)
        self._functions: Dict[bytes, Any] = {}  # pickled function -> function bound to the namespace

    # -- signals and lifecycle -------------------------------------------------
    def on_sigint(self, signum: int, frame: Any) -> None:
        if self.running:
            raise KeyboardInterrupt("interrupted by the client")

    def on_client_death(self) -> None:
        sharedmem.sweep(self.spec.cluster_id)
        os._exit(0)

    def serve(self) -> None:
        global _engine
        _engine = self
        self.send(("ready", 0))  # SIGINT is handled from here on: the client may interrupt
        tasks = FrameReader(self.spec.tasks.fileno())
        while True:
            try:
                frames = tasks.read_frames()  # all that has arrived: a burst costs one read
            except OSError:
                return
            for frame in frames:
                if frame == STOP:
                    return
                self.run_task(frame)
                self.sync_store()
            if tasks.eof:
                return
            if not frames and not self.spin_hint.spin(self._task_ready, self.id):
                self._task_ready.poll()  # spin first only while the client waits: the next call follows

    # -- control messages ------------------------------------------------------
    def poll_control(self) -> None:
        control = self.spec.control
        while self._control_ready.poll(0):
            try:
                kind, value = control.recv()
            except (EOFError, OSError):
                return
            if kind == "abort":
                self.aborted.update(value)
            elif kind == "store":
                self.store = value
            elif kind == "release":
                for name in value:
                    self.pool.release(name)
            elif kind == "store-lost":
                self.store, self.store_lost = None, value

    # -- tasks -----------------------------------------------------------------
    def run_task(self, frame: bytes) -> None:
        (seq,) = TASK_HEADER.unpack_from(frame)
        self.poll_control()
        if seq in self.aborted:
            self.aborted.discard(seq)
            self.send(("aborted", seq))
            return
        task = TaskContext(self, seq)
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr
        status: str
        payload: Any
        started = time.time()
        try:
            sys.stdout, sys.stderr = out, err
            datapub._current = task
            f, args, kwargs = self.decode_call(frame)
            self.running = True
            try:
                value = f(*args, **kwargs)
            finally:
                self.running = False
            if plain_data(value) == SCALARS_ONLY:  # travels inside the event itself: one pickle, not two
                status, payload = "value", value
            else:
                status, payload = "ok", self.encode_result(value, f)
        except BaseException as exc:  # the task's failure, reported, never fatal here
            self.running = False
            status, payload = "error", describe_exception(exc)
        finally:
            datapub._current = None
            sys.stdout, sys.stderr = saved
        completed = time.time()
        try:
            task.flush()
        except BaseException as exc:
            status, payload = "error", describe_exception(exc)
        self.send(("result", seq, status, payload, started, completed, out.getvalue(), err.getvalue(), task.sent))
        self.last_task = task

    def decode_call(self, frame: bytes) -> Tuple[Any, Tuple[Any, ...], Dict[str, Any]]:
        """Unpack a task frame; a function sent before is reused, not unpickled again."""
        view = memoryview(frame)
        (fsize,) = CALL_FUNCTION_SIZE.unpack_from(view, TASK_HEADER.size)
        start = TASK_HEADER.size + CALL_FUNCTION_SIZE.size
        fblob = bytes(view[start : start + fsize])
        f = self._functions.get(fblob)
        if f is None:
            f, filename = loads(fblob, unlink=False, what="the function")
            f = namespace.bind_to_namespace(namespace.restore_filename(f, filename), self.namespace)
            if len(self._functions) >= 64:
                self._functions.pop(next(iter(self._functions)))
            self._functions[fblob] = f
        args, kwargs = loads(view[start + fsize :], unlink=False, what="the arguments")
        return f, args, kwargs

    def encode_result(self, value: Any, f: Any) -> bytes:
        name = getattr(f, "__qualname__", "the task")
        return dumps(value, self.spec.cluster_id, what=f"the return value of {name}", pool=self.pool)[0]

    def send(self, event: Tuple[Any, ...]) -> None:
        write_frame(self._events_fd, pickle.dumps(event, protocol=5))

    # -- the durable store -------------------------------------------------------
    def sync_store(self) -> None:
        """Write the last task's merged data to the Manager dict if it changed."""
        task = self.last_task
        if task is not None and task.dirty:
            try:
                task.sync()
            except DataStoreError:
                pass  # reported to the task that publishes next
            self.last_task = None


def durable_part(state: Dict[str, Any]) -> Dict[str, Any]:
    """What the Manager dict keeps: big buffers would cost a full copy per sync, so
    values over ``STORE_MAX_VALUE_BYTES`` stay out (the client has them already)."""
    return {k: v for k, v in state.items() if _nbytes(v) <= STORE_MAX_VALUE_BYTES}


def _nbytes(value: Any) -> int:
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    size = getattr(value, "nbytes", 0)
    return size if isinstance(size, int) else 0


def describe_exception(exc: BaseException) -> Tuple[str, str, str]:
    """(type name, message, formatted traceback) of an exception, always picklable."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return type(exc).__name__, str(exc), tb


class TaskContext:
    """What ``publish_data`` needs to know about the running task."""

    def __init__(self, engine: Engine, seq: int) -> None:
        self.engine = engine
        self.seq = seq
        self.state: Dict[str, Any] = {}  # merged data, for the durable store
        self.pending: Optional[Dict[str, Any]] = None  # not yet in the queue: pipe was full
        self.sent = 0  # data frames in the queue
        self.pubseq = 0
        self.dirty = False
        self.next_sync = time.monotonic() + STORE_SYNC_MIN_INTERVAL

    def publish(self, data: Dict[str, Any]) -> None:
        engine = self.engine
        now = time.monotonic()
        if now >= engine.next_control_poll:  # a store handle or loss, segment releases: no hurry
            engine.poll_control()
            engine.next_control_poll = now + CONTROL_POLL_INTERVAL
        if engine.store_lost:
            raise DataStoreError(engine.store_lost)
        delta = data  # pickled right away: later changes by the caller do not leak in
        if self.pending is not None:
            self.pending.update(data)
            delta = self.pending
        self.pubseq += 1
        frame, segments = self.encode(("data", self.seq, engine.id, self.pubseq, delta))
        if engine.queue.try_put(frame):
            self.sent += 1
            self.pending = None
        else:  # the client is behind: keep the latest state here, send it later
            for ref in segments:
                if ref.pooled:
                    engine.pool.release(ref.name)
                else:
                    sharedmem.unlink(ref.name)
            self.pending = delta if delta is not data else dict(data)
        self.state.update(data)
        self.dirty = True
        if engine.store is not None and now >= self.next_sync:
            self.sync()

    def report_progress(self, done: int, total: int) -> None:
        frame, _ = self.encode(("progress", self.seq, self.engine.id, done, total))
        self.engine.queue.try_put(frame)  # progress is a hint: dropped, not queued, if the pipe is full

    def flush(self) -> None:
        """Send what the full pipe held back; the result must not overtake it."""
        if self.pending is not None:
            self.pubseq += 1
            frame, _ = self.encode(("data", self.seq, self.engine.id, self.pubseq, self.pending))
            self.engine.queue.put(frame)
            self.sent += 1
            self.pending = None

    def encode(self, frame: Tuple[Any, ...]) -> Tuple[bytes, List[sharedmem.SegmentRef]]:
        cluster = self.engine.spec.cluster_id
        try:
            message, segments = dumps(frame, cluster, what="the published data", pool=self.engine.pool)
        except SerializationError:
            if frame[0] != "data":
                raise
            culprit = find_unpicklable((f"published value {k!r}", v) for k, v in frame[-1].items())
            raise SerializationError(f"cannot pickle {culprit}") from None
        if len(message) > MAX_PAYLOAD:  # too big for one atomic write: spill it
            ref = sharedmem.export(cluster, memoryview(message))
            message = dumps(("spilled", ref), cluster)[0]
            segments = [*segments, ref]
        return message, segments

    def sync(self) -> None:
        engine = self.engine
        if engine.store is None:
            return
        t0 = time.monotonic()
        try:
            engine.store[engine.id] = (self.seq, self.pubseq, durable_part(self.state))
        except Exception as exc:
            engine.store_lost = f"the cluster's Manager process is unreachable ({type(exc).__name__}: {exc})"
            engine.store = None
            raise DataStoreError(engine.store_lost) from exc
        cost = time.monotonic() - t0
        self.dirty = False
        # Coalesce: spend at most ~5% of the task's time keeping the store fresh.
        self.next_sync = time.monotonic() + max(STORE_SYNC_MIN_INTERVAL, 20 * cost)


_engine: Optional[Engine] = None


def current_engine() -> Engine:
    """The engine of this process; for namespace helpers running as tasks."""
    if _engine is None:
        raise RuntimeError("not running inside a localpar engine")
    return _engine
