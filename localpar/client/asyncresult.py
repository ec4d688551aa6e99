"""AsyncResult: the handle on a submitted call, as ipyparallel users know it.

It is a ``concurrent.futures.Future`` (so ``wait``, ``as_completed``,
``add_done_callback`` and ``await`` work) that also carries what ipyparallel adds:
``get``, ``ready``, ``metadata``, ``stdout`` (growing while the task prints) and,
above all, ``data``: the dicts the task published, merged, updated live while it
runs.  A result is marked done only after every publication and every piece of
output of its task is on ``data`` and ``stdout``.

Ownership: the collector thread alone writes `_data` and the records; it never
changes a published dict in place but puts a merged copy in its slot, so a
reader's snapshot needs no lock (and a Ctrl-C in the middle of one harms
nothing).  The Future's state changes only through its public methods:
``set_result`` / ``set_exception`` from the ledger, or ``cancel`` (then
``set_running_or_notify_cancel``, for ``concurrent.futures.wait``).  A call stays
pending, never "running", until it ends (ipyparallel's AsyncResults do too): an
engine does not say when a task starts, and a call whose tasks wait at their
engines can still be cancelled (see `cancel`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import logging
import threading
import time
from concurrent import futures
from concurrent.futures import Future
from concurrent.futures import _base as futures_base
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Generator,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from .. import chaos
from ..errors import ClientClosedError, CompositeError, not_picklable
from ..processes import spin
from ..wire import sharedmem
from .metadata import TaskMetadata

if TYPE_CHECKING:
    from .handles import TaskRecord
    from .interface import ClusterAPI as Client

_logger = logging.getLogger("localpar")

Data = Union[Dict[str, Any], List[Dict[str, Any]]]

_FINISHED = futures_base.FINISHED
_DONE_STATES = frozenset({futures_base.CANCELLED, futures_base.CANCELLED_AND_NOTIFIED, futures_base.FINISHED})

_NEW, _STARTED, _CANCELLED = "new", "started", "cancelled"  # how far the call got (see _start)


def give_way() -> None:
    """Release the GIL for an instant, for a thread polling what the collector thread updates.

    A thread that loops on ``ar.data`` or ``ar.ready()`` keeps the GIL; the collector, woken by
    a publication or a result, would wait for it up to the switch interval (5 ms), and a poller
    would miss states.  ``time.sleep(0)`` releases the GIL for the timer slack of a zero sleep
    (~50-80 µs on Linux), time enough for the collector to take it and apply what woke it.
    Measured (``docs/speed.md``): ``os.sched_yield()``, which releases the GIL only around an
    instant system call, let a loop doing pure-Python work between looks see a third of the
    states; a zero sleep, all of them.  Only a look that finds nothing new pays it."""
    time.sleep(0)


class AsyncResult(TaskMetadata, Future):
    """The pending or finished result of one call on one or more engines."""

    def __init__(
        self, client: Client, fname: str = "unknown", single: bool = False, return_exceptions: bool = False
    ) -> None:
        super().__init__()
        # Future's own Condition wraps an RLock: eight objects for the garbage collector to
        # track, per task (a burst of tiny tasks in a big notebook heap spent half its time
        # in collections).  No path takes a future's condition twice (``wait`` and
        # ``as_completed`` take each once), so a plain Lock serves, in four.
        self._condition = threading.Condition(threading.Lock())
        self._client = client
        self._ledger = client.ledger
        self._phase = _NEW
        self._cancelling = False  # cancel() aborted its tasks at their engines (see finish)
        self.fname = fname
        self._single = single
        self._records: List[TaskRecord] = []
        self._data: List[Dict[str, Any]] = []
        self._data_version = 0
        # The version the last read of `data` returned: only a hint for `give_way` (any thread
        # may write it; a stale value costs one needless yield, or one skipped).
        self._version_looked_at = -1
        self._remaining = 0
        self._watchers: List[Callable[[Data], None]] = []
        self._segments: Tuple[Any, ...] = ()  # shared memory sent with the call; freed when done
        self._submitted = time.time()
        self.return_exceptions = return_exceptions  # ipyparallel's map(return_exceptions=True)

    def __reduce__(self) -> Any:
        raise not_picklable(self, "its results arrive in this process only; send the value of get() instead")

    def __repr__(self) -> str:
        state = "finished" if self.done() else "pending"
        return f"<{type(self).__name__}({self.fname}): {state}>"

    # -- the core's interface ------------------------------------------------------------
    # As ``Future.set_result`` is for executors, these are for the client core only: the
    # client adds tasks and their shared memory, the balancer marks the call sent or
    # cancelled, the ledger counts tasks done and finishes the call, the collector applies
    # publications.  Who calls each, and under which lock, is said in its docstring.
    @property
    def client(self) -> Client:
        """The Client that runs this call."""
        return self._client

    @property
    def records(self) -> List[TaskRecord]:
        """The client's record of each task of this call, in order (read them, do not change them)."""
        return self._records

    def hold_segments(self, segments: Sequence[Any]) -> None:
        """Shared memory sent with the call (its big arguments): freed once the call is finished.
        By the submitting thread, before any task of the call is sent."""
        self._segments += tuple(segments)

    def release_segments(self) -> None:
        """Unlink the call's shared memory (each engine has mapped or copied what it needs)."""
        for ref in self._segments:
            sharedmem.unlink(ref.name)
        self._segments = ()

    method = "apply"
    """ipyparallel's request type of the call: ``'execute'`` for ``execute``/``run``, else
    ``'apply'`` (set before its tasks are sent; errors' ``engine_info`` names it)."""

    parts_hold_lists = False
    """Whether each part of `split` holds a list (a map's chunk), not a bare value."""

    def data_slots(self) -> List[Dict[str, Any]]:
        """The live list of each task's data dict (the collector replaces a dict whole at each
        publication): results that share this call's tasks read it, never a copy."""
        return self._data

    def add_task(self, record: TaskRecord) -> None:
        self._records.append(record)
        self._data.append({})
        self._remaining += 1

    def mark_sent(self) -> bool:
        """Mark the call sent as its first task leaves for an engine; False if it was
        cancelled.  For load-balanced calls, under the balancer's lock."""
        if self._phase == _NEW:
            self._phase = _STARTED
        return self._phase == _STARTED

    def cancel_if_unsent(self) -> Tuple[bool, bool]:
        """(cancelled, by this call): only a call none of whose tasks has left can be.
        Under the balancer's lock; the canceller then calls `notify_cancelled`."""
        if self._phase == _NEW:
            self._phase = _CANCELLED
            return True, True
        return self._phase == _CANCELLED, False

    def begin_cancel(self) -> None:
        """cancel() is aborting the call's tasks at their engines: if none had started, the call
        ends cancelled, not failed.  By the cancelling thread, before the Abort is sent."""
        self._cancelling = True

    def notify_cancelled(self) -> None:
        Future.cancel(self)  # wakes result() callers, runs done-callbacks
        self.set_running_or_notify_cancel()  # notifies concurrent.futures.wait / as_completed

    def adopt(self, record: TaskRecord, data: Sequence[Dict[str, Any]]) -> None:
        """Become a `split()` part: a result over `record` of another call, whose data it reads
        live; it left with its call (so ``cancel()`` aborts it rather than cancelling)."""
        self._records = [record]
        self._data = data  # type: ignore[assignment]
        self._remaining = 1
        self._phase = _STARTED
        self.set_running_or_notify_cancel()

    @property
    def ledger(self) -> Any:
        """The ledger of the cluster that runs this call."""
        return self._ledger

    def task_done(self) -> bool:
        """Count a finished task; True for the last one.  Called under the ledger's lock."""
        self._remaining -= 1
        return self._remaining == 0

    def apply_data(self, index: int, delta: Dict[str, Any]) -> None:
        """Merge a publication (collector thread): a new dict replaces the old one whole."""
        merged = dict(self._data[index])
        merged.update(delta)
        if chaos.ENABLED:
            chaos.pause()
        self._data[index] = merged
        self._data_version += 1
        self.notify_data()

    def notify_data(self) -> None:
        if self._watchers:
            snapshot = self._snapshot()
            for callback in list(self._watchers):
                try:
                    callback(snapshot)
                except Exception:  # a watcher's bug must not break whoever is reading
                    _logger.exception("exception calling on_data callback for %r", self)

    def finish(self) -> None:
        """Resolve the future once every record is done (ledger, outside its lock)."""
        if self.done():  # cancelled: its tasks were dropped
            return
        if self._segments:
            self.release_segments()
        if self._cancelling and all(r.status == "aborted" for r in self._records):
            self.notify_cancelled()  # cancel() stopped every task before it started
            return
        if self._single:  # the common case, without the lists below
            record = self._records[0]
            if record.error is not None:
                self.set_exception(record.error)
            else:
                self.set_result(record.value)
            return
        errors = [r.error for r in self._records if r.error is not None]
        if errors:
            self.set_exception(CompositeError(f"one or more exceptions raised in: {self.fname}", errors))
        else:
            self.set_result([r.value for r in self._records])

    # -- waiting -------------------------------------------------------------------------
    # Future guards its state with a Condition whose Python-level lock calls cost more
    # than the rest of a small task's bookkeeping.  Its state lives in _state, _result
    # and _exception (since Python 3.2); reading them is atomic, so the hot paths below
    # read them directly.  Every change still goes through the public methods.
    def done(self) -> bool:
        return self._state in _DONE_STATES

    def _outcome(self) -> Any:
        """The value of a finished call, or raise its error."""
        if self._state == _FINISHED:
            if self._exception is not None:
                raise self._exception
            return self._result
        return super().result(timeout=0)  # cancelled: raises CancelledError

    def wait_until(self, predicate: Callable[[], bool], timeout: Optional[float]) -> bool:
        """Block until `predicate()` holds, looked at again after every change the collector
        applies (a task done, a publication, output); False after `timeout` seconds."""
        if not predicate():
            self._ledger.check_can_wait()
        return self._ledger.wait_until(predicate, timeout)

    def _wait_for_record(self, record: TaskRecord) -> None:
        self.wait_until(lambda: record.done, None)

    def _changed_since(self, version: int) -> bool:
        return self._data_version != version or self.done()

    def wait(self, timeout: Optional[float] = -1, return_when: Optional[str] = None) -> Any:
        """Wait up to `timeout` seconds (forever if None or negative); True if done.

        With `return_when` (``concurrent.futures.FIRST_COMPLETED``, ``FIRST_EXCEPTION``
        or ``ALL_COMPLETED``), return ``(done, pending)``: sets of one-task AsyncResults
        (see `split`), as ``concurrent.futures.wait`` does.
        """
        if return_when is not None:
            return wait_split(self, timeout, return_when)
        if self.done():
            return True
        self._ledger.check_can_wait()
        limit = None if timeout is None or timeout < 0 else timeout
        with self._ledger.waiting() as cpu_to_spare:
            seconds = spin.SPIN_SECONDS if cpu_to_spare else 0.0
            if spin.spin_until(self.done, seconds if limit is None else min(limit, seconds)):
                return True  # the answer was microseconds away: no wake-up needed
            try:
                Future.exception(self, limit)
            except futures.CancelledError:
                pass
            except futures.TimeoutError:
                return False
        return True

    def ready(self) -> bool:
        """Whether the call has finished; a False first gives the GIL away for an instant
        (`give_way`): a loop polling ``ready()`` must not hold off the collector that would
        make it True."""
        if self.done():
            return True
        give_way()
        return self.done()

    def successful(self) -> bool:
        """Whether the call finished without error; raises if it is not finished."""
        if not self.ready():
            raise RuntimeError("Cannot check successful() if not done.")
        return self.exception(timeout=0) is None

    def get(
        self, timeout: Optional[float] = -1, return_exceptions: Optional[bool] = None, return_when: Any = None
    ) -> Any:
        """The result (a list in target order, or a bare value for one int target).

        Raises the builtin ``TimeoutError`` if not ready in time; the task keeps running.
        With ``return_exceptions=True``, each failed task's `RemoteError` takes the place
        of its result instead of being raised.  ``return_when=FIRST_EXCEPTION`` raises the
        first failure without waiting for the other tasks.
        """
        if return_when is not None and str(return_when) == "FIRST_EXCEPTION" and not self.done():
            done, _ = self.wait(timeout, return_when=return_when)
            for child in done:
                if child.records[0].error is not None:
                    return child.get(0, return_exceptions=return_exceptions)
        if not self.wait(timeout):
            raise TimeoutError(f"result of {self.fname} not ready after {timeout} s")
        if (self.return_exceptions if return_exceptions is None else return_exceptions) and self._exception:
            return self._with_exceptions()
        return self._outcome()

    def _with_exceptions(self) -> Any:
        """The results with each failed task's error in its place."""
        values = [r.error if r.error is not None else r.value for r in self._records]
        return values[0] if self._single else values

    def result(self, timeout: Optional[float] = None) -> Any:  # the Future API
        return self.get(timeout)

    @property
    def r(self) -> Any:
        """The result, waiting for it (ipyparallel's shorthand)."""
        return self.get()

    def wait_for_output(self, timeout: Optional[float] = -1) -> bool:
        """ipyparallel's call to wait for data and output; here they always come first."""
        return self.wait(timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        if not self.wait(timeout):
            raise TimeoutError(f"result of {self.fname} not ready after {timeout} s")
        return super().exception(timeout=0)

    def get_dict(self, timeout: Optional[float] = -1) -> Dict[int, Any]:
        """The results as ``{engine_id: result}``; needs one task per engine."""
        results = self.get(timeout)
        if self._single:
            results = [results]
        ids = [r.engine_id for r in self._records]
        if len(set(ids)) != len(ids):
            raise ValueError(f"cannot build a dict: several tasks ran on one engine ({ids})")
        return dict(zip(ids, results))

    @property
    def result_dict(self) -> Dict[int, Any]:
        """``get_dict()``, waiting for the result (ipyparallel's property)."""
        return self.get_dict()

    def abort(self) -> None:
        """Drop this call's tasks that have not started; they fail with TaskAborted."""
        self._client.abort(self)

    def cancel(self) -> bool:
        """The Future API: True (and cancelled, as ``concurrent.futures.wait``,
        ``as_completed`` and asyncio see it) if none of its tasks had started.

        Tasks still in the client are dropped at once; tasks waiting at their engines
        are aborted there, and cancel() waits for the engines' answer (a round trip,
        answered even while a task runs; bounded by ``Client.CANCEL_WAIT``).  If one
        had started: False, and it runs to its end (tasks of the same call that had
        not started are aborted: they fail with TaskAborted).  Called from a callback
        (the thread that completes results cannot wait for an answer), a call that
        left the client is not touched: False, and it runs.
        """
        if self.done():
            return self.cancelled()
        try:
            if self._client.cancel_unsent(self):
                return True
            cancel_sent([self])
        except ClientClosedError:
            pass  # its tasks fail with ClientClosedError
        return self.cancelled()

    def __await__(self) -> Generator[Any, None, Any]:
        import asyncio  # here, not at import: a caller that awaits has it loaded; others save ~25 ms

        return asyncio.wrap_future(self).__await__()

    # -- iteration -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Any]:
        """Yield the results in order, each as soon as it is ready."""
        if self._single:
            yield self.get()
            return
        for record in self._records:
            self._wait_for_record(record)
            if record.error is not None and not self.return_exceptions:
                raise record.error
            yield record.value if record.error is None else record.error

    # -- published data ------------------------------------------------------------------
    def _snapshot(self) -> Data:
        copies = [dict(d) for d in self._data]
        return copies[0] if self._single else copies

    @property
    def data(self) -> Data:
        """The latest published data: a dict per engine (list), or one dict for one int target.

        Read again with nothing new since the last read (a loop polling it), it first gives
        the GIL away for an instant (`give_way`), so that the collector can apply the next
        publication now rather than after the interpreter's switch interval."""
        version = self._data_version
        if version == self._version_looked_at:
            give_way()
        self._version_looked_at = version
        return self._snapshot()

    def on_data(self, callback: Callable[[Data], None]) -> Callable[[Data], None]:
        """Call ``callback(data)`` on every update (from whichever thread applies it)."""
        self._watchers.append(callback)
        return callback

    def iter_data(self, timeout: Optional[float] = None) -> Iterator[Data]:
        """Yield each new state of ``data`` until the call ends (the final state last)."""
        seen = -1
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.wait_until(functools.partial(self._changed_since, seen), remaining)
            if self._data_version != seen:
                seen = self._data_version
                yield self._snapshot()
            elif self.done():
                return
            elif deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"data of {self.fname} did not change in {timeout} s")

    async def aiter_data(self) -> AsyncIterator[Data]:
        """``async for data in ar.aiter_data()``: the asyncio form of `iter_data`."""
        import asyncio  # see __await__

        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake(*_: Any) -> None:
            loop.call_soon_threadsafe(changed.set)

        self._watchers.append(wake)
        self.add_done_callback(wake)
        seen = -1
        try:
            while True:
                if self._data_version != seen:
                    seen = self._data_version
                    yield self._snapshot()
                    continue
                if self.done():
                    return
                changed.clear()
                if self._data_version == seen and not self.done():
                    await changed.wait()
        finally:
            self._watchers.remove(wake)

    @property
    def progress(self) -> int:
        """How many of this call's tasks have finished."""
        return sum(r.done for r in self._records)

    @property
    def task_progress(self) -> List[Optional[tuple]]:
        """Each task's own ``report_progress(done, total)``, or None if it reported none."""
        return [r.progress for r in self._records]

    @contextlib.contextmanager
    def stream_output(self) -> Iterator[None]:
        """ipyparallel's ``with ar.stream_output(): ...``: print the tasks' output (labelled
        ``[stdout:0]`` as it changes), errors and ``Out[0:n]`` as they arrive, from a thread of
        its own, until the block ends; what arrived by then is all printed on leaving it."""
        from .streaming import OutputPrinter

        printer = OutputPrinter(self)
        stop = threading.Event()
        thread = threading.Thread(target=printer.follow, args=(stop,), name="localpar-stream-output", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            self._ledger.notify_waiters()
            thread.join(timeout=5)
            printer.print_new()

    def display_outputs(self, groupby: str = "type", result_only: bool = False) -> None:
        """Print each task's captured stdout and stderr, labelled by engine (a single-target
        result without label), then each ``execute(silent=False)`` result as ``Out[engine:n]``.

        `groupby`: ``'type'`` or ``'order'`` (all stdout, then all stderr, then results) or
        ``'engine'`` (each engine's outputs together), as ipyparallel's.
        """
        from .streaming import display_outputs

        display_outputs(self, groupby, result_only)

    def wait_interactive(
        self,
        interval: float = 0.1,
        timeout: Optional[float] = None,
        widget: Optional[bool] = None,
        return_when: Optional[str] = None,
    ) -> None:
        """Wait while showing progress: tqdm bars if installed, one text line otherwise.

        ``return_when=FIRST_EXCEPTION`` (or ``FIRST_COMPLETED``) stops waiting early, as
        ``wait(return_when=...)`` does.
        """
        from .progress import wait_interactive

        if timeout is not None and timeout < 0:
            timeout = None
        if return_when is None or return_when == "ALL_COMPLETED":
            wait_interactive(self, interval=interval, timeout=timeout, widget=widget)
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done, pending = wait_split(self, interval, return_when)
            if not pending or (return_when == "FIRST_COMPLETED" and done):
                return
            if return_when == "FIRST_EXCEPTION" and any(p._exception is not None for p in done):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{self.fname} not done after {timeout} s")

    def wait_for_send(self, timeout: Optional[float] = -1) -> None:
        """ipyparallel waits for ZeroMQ to copy the message; a localpar call owns its own copy once
        submitted (pickled, or in shared memory), so there is nothing left to wait for."""

    def split(self) -> tuple:
        """One AsyncResult per task (itself when it has one), e.g. for ``concurrent.futures.wait``."""
        return split_result(self)

    @classmethod
    def join(cls, *async_results: AsyncResult) -> AsyncResult:
        """The inverse of `split`: one AsyncResult over the tasks of several."""
        return join_results(*async_results)


# -- split() and join(): results over other results' tasks (ipyparallel's AsyncResult.split/join) --
class _Slots(Sequence[Dict[str, Any]]):
    """A live view of some data slots of other AsyncResults: the collector replaces a slot's
    dict whole at each publication, so a part reads the slot, never a copy of it."""

    def __init__(self, slots: List[Tuple[List[Dict[str, Any]], int]]) -> None:
        self._slots = slots

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [source[k] for source, k in self._slots[i]]
        source, k = self._slots[i]
        return source[k]

    def __len__(self) -> int:
        return len(self._slots)


class PartResult(AsyncResult):
    """An AsyncResult over records that belong to other AsyncResults."""

    def __init__(self, source: AsyncResult, records: List[TaskRecord], data: _Slots, single: bool):
        super().__init__(source.client, source.fname, single=single)
        self._records = list(records)
        self._data = data  # type: ignore[assignment]
        self.return_exceptions = source.return_exceptions

    def wait(self, timeout: Optional[float] = -1, return_when: Optional[str] = None) -> Any:
        if return_when is None and not self.wait_until(lambda: all(r.done for r in self._records), timeout):
            return False
        return super().wait(timeout, return_when)

    def done(self) -> bool:
        if super().done():
            return True
        if all(r.done for r in self._records):
            self._finish_parts()
        return super().done()

    def _finish_parts(self) -> None:
        if self._state in ("CANCELLED", "CANCELLED_AND_NOTIFIED", "FINISHED"):
            return
        errors = [r.error for r in self._records if r.error is not None]
        try:
            if self._single:
                record = self._records[0]
                if record.error is not None:
                    self.set_exception(record.error)
                else:
                    self.set_result(record.value)
            elif errors:
                self.set_exception(CompositeError(f"one or more exceptions raised in: {self.fname}", errors))
            else:
                self.set_result([r.value for r in self._records])
        except Exception:  # resolved by a racing thread
            pass


def split_result(ar: AsyncResult) -> Tuple[AsyncResult, ...]:
    """One plain `AsyncResult` per task (as ipyparallel's), each finished by the ledger when its
    task completes (``Ledger.add_part``)."""
    if len(ar.records) == 1:
        return (ar,)
    cached = ar.__dict__.get("_split_parts")
    if cached is not None:
        return cached
    # One value per part for an apply; a map's part keeps its chunk in a list, as ipyparallel does.
    single = not ar.parts_hold_lists
    parts = tuple(_part(ar, r, i, single) for i, r in enumerate(ar.records))
    ar.__dict__["_split_parts"] = parts
    return parts


def _part(source: AsyncResult, record: TaskRecord, index: int, single: bool) -> AsyncResult:
    part = AsyncResult(source.client, source.fname, single=single, return_exceptions=source.return_exceptions)
    part.adopt(record, _Slots([(source.data_slots(), index)]))
    if not source.ledger.add_part(record, part):
        part.finish()  # the task was done already
    return part


def join_results(*ars: AsyncResult) -> AsyncResult:
    if not ars:
        raise ValueError("Must specify at least one AsyncResult to join")
    if len(ars) == 1:
        return ars[0]
    records = [r for ar in ars for r in ar.records]
    slots = [(ar.data_slots(), i) for ar in ars for i in range(len(ar.records))]
    return PartResult(ars[0], records, _Slots(slots), single=False)


def wait_split(
    ar: AsyncResult, timeout: Optional[float], return_when: str
) -> Tuple[Set[AsyncResult], Set[AsyncResult]]:
    parts = split_result(ar)
    if return_when == concurrent.futures.FIRST_COMPLETED:

        def ready() -> bool:
            return any(p.done() for p in parts)

    elif return_when == concurrent.futures.FIRST_EXCEPTION:

        def ready() -> bool:
            finished = [p for p in parts if p.done()]
            return len(finished) == len(parts) or any(p._exception is not None for p in finished)

    elif return_when == concurrent.futures.ALL_COMPLETED:

        def ready() -> bool:
            return all(p.done() for p in parts)

    else:
        raise ValueError(f"Unrecognized return_when={return_when!r}")
    ar.wait_until(ready, timeout)
    done = {p for p in parts if p.done()}
    return done, set(parts) - done


def cancel_sent(ars: Sequence[AsyncResult]) -> None:
    """Cancel calls (of one client) whose tasks left it: abort them at their engines and wait
    for the answers (bounded by ``ledger.CANCEL_WAIT``); a call none of whose tasks had started
    ends cancelled (`AsyncResult.finish`).  In the collector thread (a callback), which cannot
    wait for its own reading of the answers, nothing is done: the calls run."""
    ars = [ar for ar in ars if not ar.done()]
    if not ars:
        return
    client = ars[0].client
    if threading.current_thread() is client.ledger.collector_thread:
        return
    for ar in ars:
        ar.begin_cancel()
    client.abort(ars)
    client.ledger.wait_for_abort_answers([r for ar in ars for r in ar.records])
