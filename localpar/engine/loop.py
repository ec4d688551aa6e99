"""The engine process: a loop that runs one task at a time, in arrival order.

    task pipe ──► read frames ──► run f(*args, **kwargs) ──► event pipe: Result (value
    (from client)                      │                     or error, times, count of
                                       │                     Data and Output frames)
                                       ├─ publish_data ──► publication queue (shared,
                                       │                   atomic frames); Manager dict
                                       └─ print, sys.stderr ──► the same queue: Output,
                                                           coalesced (see ``output``)
    control pipe ──► read under the engine lock by the control thread as messages come,
                     and by the loop before each task: a Reclaim is answered at once
                     (Reclaimed, on the event pipe), even while a task runs, and so is
                     an Abort (Aborted: the tasks it drops); Release, UseStore and
                     StoreLost go to the inbox, applied before each
                     task, now and then by publish_data (never blocking the task), and as
                     they come while the engine is idle (the inbox rings the idle loop's bell).

A task runs at most once: under the engine lock, the loop marks a task started
(`seen`) before running it, and the control thread hands back (or aborts) only
tasks not marked; a handed-back or aborted task's frame is skipped when it arrives.

Idle, the engine waits for a task or a control message; once it has been idle
``SegmentPool.IDLE_TRIM_SECONDS``, it gives free segments beyond
``SegmentPool.IDLE_KEEP_BYTES`` back to the system (see ``sharedmem``).  The
wait is timed by that deadline only while there is something to trim.

Interrupts: ``Client.interrupt`` sends an Interrupt naming the engine's oldest unfinished
task: the control thread, under the engine lock, remembers it if that task has not started
(it is then interrupted as it starts, before its code runs) and sends the main thread
SIGINT if it runs; a task that ended is left alone.  So an interrupt sent right after
the task, before the engine took it, is not lost.  SIGINT raises KeyboardInterrupt only
in the task's own code: the handler looks up the interrupted stack for the
frame of ``call_task``.  Each task starts with that handler installed and SIGINT
unblocked, whatever an earlier task did to them (``SIG_IGN``, its own handler, a
blocked mask).  Anywhere else (the loop, decoding, sending the result), or inside
the engine's talk with the client on the task's behalf
(``publish_data``, reading the control pipe, a write to ``sys.stdout`` or
``sys.stderr``), the interrupt is held: raised as soon as that call returns to
the task, dropped once the task has ended.  So no pipe is ever left with half a
message, no count is left short, and the loop never sees it.

An engine lives in its own session (a terminal's Ctrl-C is the client's), and its
control thread watches the lifeline too: the engine exits when the client dies, after
removing the cluster's shared memory; a task pipe that ends without STOP means the same
(the loop then waits for the lifeline, which a dying client closes a moment later).  It
is the subreaper of what its tasks start and ends those processes before it
exits, on STOP and on lifeline EOF alike (see ``proctree``); a cluster a task
opened and left open (a nested ``Client``) is closed first, so that it removes
its own shared memory.

Function globals, one rule for every call: a function defined in ``__main__`` (a
script, a notebook) runs with the engine's namespace as its globals, and before
each call the globals it names are set to the values they had on the client
when the call was made (cloudpickle captures them); names the client did not
define resolve in the namespace (``push``, ``execute``).

The engine imports nothing of the client's side (see ``messages``).
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from ..processes import lifeline, proctree
from ..processes.spin import SpinHint
from ..wire import captures, messages, sharedmem
from ..wire.framing import Bell, FrameReader, write_frame
from ..wire.messages import (
    STOP,
    TASK_HEADER,
    Abort,
    Aborted,
    Interrupt,
    Ready,
    Reclaim,
    Reclaimed,
    Release,
    Result,
    StoreLost,
    UseStore,
)
from ..wire.pubqueue import PublicationWriter
from ..wire.serialization import CALL_FUNCTION_SIZE, SCALARS_ONLY, dumps, loads, plain_data
from ..wire.spec import EngineSpec
from . import compat, datapub, functions, kernel
from .output import Flusher, TaskOutput, TaskStream
from .publishing import StoreWriter, TaskContext

_SIGINT = frozenset({signal.SIGINT})
FUNCTION_CACHE_SIZE = 64  # functions kept unpickled, by their pickled bytes (see ``captures``)
SEEN_KEPT = 4096  # task numbers remembered to skip a frame written twice


def run_engine(spec: EngineSpec) -> None:
    """Entry point of an engine process."""
    os.setsid()  # leave the terminal's process group: Ctrl-C is the client's
    proctree.become_subreaper()  # orphans below it stay in its tree (see proctree)
    proctree.mark(spec.cluster_id)
    import multiprocessing

    multiprocessing.current_process().authkey = spec.authkey
    compat.install()  # ipyparallel's and IPython's datapub names reach localpar's publish_data
    sharedmem.warn_on_stderr()  # a full /dev/shm is said in the task's stderr (ar.stderr)
    engine = Engine(spec)
    signal.signal(signal.SIGINT, engine.sigint_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGINT)  # blocked by the client during start
    threading.Thread(target=engine.read_control, name="localpar-control", daemon=True).start()
    os.register_at_fork(after_in_child=_forked_by_a_task, after_in_parent=engine.reaper.forked)
    try:
        if not engine.serve():
            engine.on_tasks_ended()  # does not return
    finally:
        close_nested_clients()
        proctree.end_descendants(spec.cluster_id)  # what its tasks started goes with it
        engine.pool.close()


class Engine:
    """One engine process: its task loop (the main thread), the control thread that answers
    the client between and during tasks, and the pipes and namespace they share."""

    def __init__(self, spec: EngineSpec) -> None:
        self.id = spec.engine_id
        self.spec = spec
        self.pid = os.getpid()
        self.main_ident = threading.get_ident()
        self.queue = PublicationWriter(spec.publications)
        self.pool = sharedmem.SegmentPool(spec.cluster_id)
        self.store = StoreWriter(spec.engine_id)
        self.flusher = Flusher()  # sends a running task's output while it runs
        self.stdout, self.stderr = TaskStream("stdout"), TaskStream("stderr")  # each task's, in turn
        # Under the engine lock: aborted, reclaimed, seen, _seen_order, _inbox.
        self.aborted: Set[int] = set()
        self.reclaimed: Set[int] = set()  # handed back to the client: skipped when they arrive
        self.seen: Set[int] = set()  # the latest tasks started or skipped: a frame sent twice runs once
        self._seen_order: Deque[int] = collections.deque()
        self._inbox: Deque[messages.Control] = collections.deque()  # from the control thread
        self._send_lock = threading.Lock()  # the event pipe has two writers: the loop and the control thread
        self.namespace: Dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        # The engine lock: the control pipe's reader and the running task's publications.
        self.lock = threading.Lock()
        self.running = False  # a task is between decoding and its result
        self.current: Optional[int] = None  # the task started and not ended (engine lock)
        self.interrupt_at_start: Set[int] = set()  # tasks to interrupt as they start (engine lock)
        self.interrupt_pending = False  # SIGINT landed in localpar's code while a task ran
        self._client_gone = threading.Lock()  # held by the one thread that cleans up after the client
        self.next_control_poll = 0.0  # publish_data looks at the control pipe from then on
        self._control = FrameReader(spec.control.fileno())
        self._control_ready = select.poll()
        self._control_ready.register(self._control.fd, select.POLLIN)
        self._events_fd = spec.events.fileno()
        self.spin_hint = SpinHint(spec.spin_hint)
        self._task_ready = select.poll()
        self._task_ready.register(spec.tasks.fileno(), select.POLLIN)
        self._inbox_bell = Bell()  # rung by the control thread when the inbox gets a message
        self._idle_ready = select.poll()  # a task, or a control message (segment releases) while idle
        self._idle_ready.register(spec.tasks.fileno(), select.POLLIN)
        self._idle_ready.register(self._inbox_bell.fd, select.POLLIN)
        self._functions: Dict[bytes, Tuple[Callable[..., Any], Dict[str, Any]]] = {}
        self.sigint_handler = self.on_sigint  # one bound method: each task starts with it (see run_task)
        self.reaper = proctree.OrphanReaper()  # after each task: the orphans it left that exited

    # -- signals and lifecycle -------------------------------------------------
    def on_sigint(self, signum: int, frame: Any) -> None:
        if not self.running:
            return  # between tasks: nothing to interrupt
        here = frame
        while here is not None:  # from the interrupted frame up to the task's call, if it is in it
            code = here.f_code
            if code in _SHIELDED:
                break
            if code is _CALL_TASK:
                self.interrupt_pending = False  # this is the one (an Interrupt sets both)
                raise KeyboardInterrupt("interrupted by the client")
            here = here.f_back
        self.interrupt_pending = True  # localpar's own code: see the module docstring

    def raise_pending_interrupt(self) -> None:
        """Back to the task's code: raise the interrupt that landed in localpar's."""
        if self.interrupt_pending:
            self.interrupt_pending = False
            raise KeyboardInterrupt("interrupted by the client")

    def on_client_death(self) -> None:
        """The client is gone: close what tasks left open, end the tree, remove the cluster's
        shared memory (the client's own spin page included), exit.  Once: the second of the two
        threads that can see the death (the control thread, the loop) waits here for the exit."""
        self._client_gone.acquire()  # never released
        close_nested_clients()
        proctree.end_descendants(self.spec.cluster_id)
        sharedmem.sweep(self.spec.cluster_id)
        os._exit(0)

    def on_tasks_ended(self) -> None:
        """The task pipe ended without STOP.  The client closes its end only after the engine
        ended, so the client is gone; but a dying process's descriptors close one by one, and
        the task pipe may end a moment before the lifeline.  Wait for the lifeline (it ends with
        the client), then clean up as on its death; exiting now would leave that undone."""
        while not lifeline.broken(self.spec.lifeline.fileno()):
            pass
        self.on_client_death()

    def serve(self) -> bool:
        """Run tasks until STOP (True) or the end of the task pipe (False)."""
        global _engine
        _engine = self
        kernel.watch_imports(
            self.namespace, self.stdout
        )  # IPython, if a task imports it, brings the engine's shell (see kernel)
        self.send(Ready(self.id))  # SIGINT is handled from here on: the client may interrupt
        tasks = FrameReader(self.spec.tasks.fileno())
        while True:
            try:
                frames = tasks.read_frames()  # all that has arrived: a burst costs one read
            except OSError:
                return False
            for frame in frames:
                if frame == STOP:
                    return True
                self.run_task(frame)
            if tasks.eof:
                return False
            if not frames and not self.spin_hint.spin(self._task_ready, self.id):
                self.idle()  # spin first only while the client waits: the next call follows

    def idle(self) -> None:
        """Wait for a task; meanwhile apply control messages, and trim the segment pool once
        idle for ``IDLE_TRIM_SECONDS`` (a timed wait for that deadline, not a polling loop)."""
        pool = self.pool
        trim_at = time.monotonic() + pool.IDLE_TRIM_SECONDS
        tasks_fd = self.spec.tasks.fileno()
        while True:
            timeout = None  # nothing to give back: wait for the next message
            if pool.free_bytes > pool.IDLE_KEEP_BYTES:
                timeout = max(0, int((trim_at - time.monotonic()) * 1000) + 1)
            ready = self._idle_ready.poll(timeout)
            if not ready:
                with self.lock:  # the pool's other users (releases, publications) hold it too
                    pool.trim(pool.IDLE_KEEP_BYTES)
                continue
            if any(fd == tasks_fd for fd, _ in ready):
                return
            self._inbox_bell.clear()
            with self.lock:
                self.poll_control()

    # -- control messages ------------------------------------------------------
    def read_control(self) -> None:
        """The control pipe's one reader and the lifeline's watch, in a thread of its own (see
        the module docstring): one thread, not two, because each costs engine start-up time."""
        line = self.spec.lifeline.fileno()
        ready = select.poll()
        ready.register(self._control.fd, select.POLLIN)
        ready.register(line, select.POLLIN)
        while True:
            for fd, _ in ready.poll():
                if fd == line:
                    if lifeline.broken(line):
                        self.on_client_death()
                    continue
                with self.lock:
                    more = self._take_control()
                if not more:  # the client closed its end: only the lifeline is left to watch
                    ready.unregister(self._control.fd)

    def _take_control(self) -> bool:
        """Read what has arrived on the control pipe: a Reclaim is answered, the rest goes to
        the inbox.  The engine lock is held, so the pipe has one reader at a time; False at its end."""
        try:
            frames = self._control.read_frames()
        except OSError:
            return False
        for frame in frames:
            message = messages.decode(frame)
            if type(message) is Reclaim:
                self.reclaim(message.seqs)
            elif type(message) is Interrupt:
                self.interrupt(message.seq)
            elif type(message) is Abort:
                self.abort(message.seqs)
            else:
                self._inbox.append(message)
                self._inbox_bell.ring()
        return not self._control.eof

    def reclaim(self, seqs: List[int]) -> None:
        """Hand back those of `seqs` not started yet; the engine lock is held."""
        seen, aborted = self.seen, self.aborted
        back = [seq for seq in seqs if seq not in seen and seq not in aborted]
        self.reclaimed.update(back)
        self.send(Reclaimed(back))  # answered even if empty: the client waits for it before asking again

    def abort(self, seqs: List[int]) -> None:
        """Drop those of `seqs` not started yet, and say which at once, even mid-task: the
        client fails them with TaskAborted then, not when their frames arrive.  The engine
        lock is held."""
        seen, reclaimed = self.seen, self.reclaimed
        dropped = [seq for seq in seqs if seq not in seen and seq not in reclaimed]
        self.aborted.update(dropped)
        self.send(Aborted(dropped, [seq for seq in seqs if seq in seen]))  # a reclaimed one: neither

    def interrupt(self, seq: int) -> None:
        """Interrupt task `seq`: now if it runs, as it starts if it has not, not at all if it
        ended (see the module docstring); the engine lock is held."""
        if seq == self.current and self.running:  # SIGINT does the rest (see on_sigint)
            signal.pthread_kill(self.main_ident, signal.SIGINT)
        elif seq == self.current or seq not in self.seen:  # starting, or still to come
            self.interrupt_at_start.add(seq)

    def poll_control(self) -> None:
        """Apply the control messages that have arrived; the engine lock is held.

        It reads the pipe itself too: an Abort written before a task starts must be seen
        by then, whether or not the control thread has woken up yet."""
        if self._control_ready.poll(0):  # cheaper than a read that finds nothing
            self._take_control()
        while self._inbox:
            message = self._inbox.popleft()
            if isinstance(message, Release):
                for name in message.names:
                    self.pool.release(name)
            elif isinstance(message, UseStore):
                self.store.use(message.proxy)
            elif isinstance(message, StoreLost):
                self.store.lost = message.reason

    # -- tasks -----------------------------------------------------------------
    def run_task(self, frame: bytes) -> None:
        (seq,) = TASK_HEADER.unpack_from(frame)
        with self.lock:
            if seq in self.seen:
                return  # written twice by a client interrupted mid-send (see framing.Outbox)
            self.seen.add(seq)
            self._seen_order.append(seq)
            if len(self._seen_order) > SEEN_KEPT:
                self.seen.discard(self._seen_order.popleft())
            if seq in self.reclaimed:
                self.reclaimed.discard(seq)
                self.interrupt_at_start.discard(seq)
                return  # handed back: it runs elsewhere, under another number
            self.current = seq  # an Interrupt read below (poll_control) is kept for its start
            self.poll_control()
            interrupted = seq in self.interrupt_at_start
            if interrupted:
                self.interrupt_at_start.discard(seq)
            if seq in self.aborted:
                self.aborted.discard(seq)
                self.current = None
                return  # the client was told when it asked (see abort)
            task = TaskContext(self, seq)
            self.running = True  # under the lock with `current`: an Interrupt from here on is a SIGINT
            self.interrupt_pending = interrupted  # raised as its code starts (call_task)
        saved = sys.stdout, sys.stderr
        output = TaskOutput(
            self.queue, self.id, seq, self.flusher, self.raise_pending_interrupt, task.older_threads,
            self.spec.cluster_id, self.send,
        )  # fmt: skip
        self.stdout.use(output, saved[0])
        self.stderr.use(output, saved[1])
        status: str
        payload: Any
        started = time.time()
        try:
            sys.stdout, sys.stderr = self.stdout, self.stderr
            datapub.bind(task)
            f, args, kwargs = self.decode_call(frame)
            value = call_task(self, f, args, kwargs)
            if plain_data(value) == SCALARS_ONLY:  # travels inside the event itself: one pickle, not two
                status, payload = "value", value
            else:
                status, payload = "ok", self.encode_result(value, f)
        except BaseException as exc:  # the task's failure, reported, never fatal here
            status, payload = "error", describe_exception(exc)
        finally:
            datapub.bind(None)
            sys.stdout, sys.stderr = saved
        if os.getpid() != self.pid:  # a process the task forked returned here: it is no engine
            os._exit(0)
        completed = time.time()
        with self.lock:
            try:
                sent = task.close()
            except BaseException as exc:
                status, payload, sent = "error", describe_exception(exc), task.sent
            self.running = False
            self.current = None
            self.interrupt_pending = False  # it came after the task's end: nothing to interrupt
        sent += output.close()  # after its Data: the client completes the task once all are applied
        self.send(Result(seq, status, payload, started, completed, sent))
        # After the Result, off the round trip: the next task starts as the first did.
        if signal.getsignal(signal.SIGINT) is not self.sigint_handler:  # the task changed it
            signal.signal(signal.SIGINT, self.sigint_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGINT)  # or blocked it
        self.reaper.reap()  # one waitid when nothing exited

    def publish(self, task: TaskContext, data: Dict[str, Any]) -> None:
        """``publish_data`` from any thread of the task; an interrupt waits until it is done."""
        try:
            with self.lock:
                task.publish(data)
        finally:
            if threading.get_ident() == self.main_ident:
                self.raise_pending_interrupt()

    def report_progress(self, task: TaskContext, done: int, total: int) -> None:
        try:
            with self.lock:
                task.report_progress(done, total)
        finally:
            if threading.get_ident() == self.main_ident:
                self.raise_pending_interrupt()

    def decode_call(self, frame: bytes) -> Tuple[Any, Tuple[Any, ...], Dict[str, Any]]:
        """Unpack a task frame; a function sent before is reused, not unpickled again."""
        view = memoryview(frame)
        (fsize,) = CALL_FUNCTION_SIZE.unpack_from(view, TASK_HEADER.size)
        start = TASK_HEADER.size + CALL_FUNCTION_SIZE.size
        fblob = bytes(view[start : start + fsize])
        cached = self._functions.get(fblob)
        if cached is None:
            f, filename = loads(fblob, unlink=False, what="the function")
            reusable = captures.reusable(f)  # else what it captured may be changed by this call
            cached = functions.bind_to_namespace(functions.restore_filename(f, filename), self.namespace)
            if reusable:
                if len(self._functions) >= FUNCTION_CACHE_SIZE:
                    self._functions.pop(next(iter(self._functions)))
                self._functions[fblob] = cached
        f, captured = functions.fresh_copy(*cached)  # never the cached one: see ``functions``
        if captured:
            self.namespace.update(captured)  # the rule above: the client's values, at every call
        args, kwargs = loads(view[start + fsize :], unlink=False, what="the arguments")
        return f, args, kwargs

    def encode_result(self, value: Any, f: Any) -> bytes:
        name = getattr(f, "__qualname__", "the task")
        return dumps(value, self.spec.cluster_id, what=f"the return value of {name}", pool=self.pool)[0]

    def send(self, event: messages.Event) -> None:
        frame = messages.encode(event)
        with self._send_lock:
            write_frame(self._events_fd, frame)


def call_task(engine: Engine, f: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """The one frame below which an interrupt may raise: the task's own code."""
    engine.raise_pending_interrupt()
    return f(*args, **kwargs)


_CALL_TASK = call_task.__code__
_SHIELDED = frozenset(  # below the task's code, these make an interrupt wait (see on_sigint)
    f.__code__
    for f in (Engine.publish, Engine.report_progress, Engine.poll_control, TaskStream.write, TaskStream.display)
)


def describe_exception(exc: BaseException) -> Tuple[str, str, str]:
    """(type name, message, formatted traceback) of an exception, always picklable; a
    failed cell's are those of its own error, as the shell drew them (``kernel``)."""
    if isinstance(exc, kernel.CellError):
        return exc.ename, exc.evalue, exc.traceback
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return type(exc).__name__, str(exc), tb


def close_nested_clients() -> None:
    """Close the clusters that tasks opened here and left open (a ``Client`` inside a
    task), before the engine ends its tree: closed, they stop their engines and Manager
    at once and remove their shared memory; killed, they would leave it behind.
    Engines run no ``atexit`` hook, so nothing else would close them."""
    registry = sys.modules.get("localpar.processes.clusters")  # loaded only if a task made a Client
    if registry is not None:
        with contextlib.suppress(Exception):
            registry.close_all()


def _forked_by_a_task() -> None:
    """In a process that a task forked: it is no engine, and publishes nothing."""
    global _engine
    _engine = None
    datapub.bind(None)


_engine: Optional[Engine] = None


def current_engine() -> Engine:
    """The engine of this process; for namespace helpers running as tasks."""
    if _engine is None:
        raise RuntimeError("not running inside a localpar engine")
    return _engine
