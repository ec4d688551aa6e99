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
``set_running_or_notify_cancel`` when the first task leaves for an engine,
then ``set_result`` / ``set_exception`` from the ledger, or ``cancel``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
import time
from concurrent import futures
from concurrent.futures import Future
from concurrent.futures import _base as futures_base
from datetime import datetime
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Dict, Generator, Iterator, List, Optional, Tuple, Union

from .. import chaos
from ..errors import CompositeError, not_picklable
from ..processes import spin

if TYPE_CHECKING:
    from .client import Client
    from .handles import TaskRecord

_logger = logging.getLogger("localpar")

Data = Union[Dict[str, Any], List[Dict[str, Any]]]

_FINISHED = futures_base.FINISHED
_DONE_STATES = frozenset({futures_base.CANCELLED, futures_base.CANCELLED_AND_NOTIFIED, futures_base.FINISHED})

_NEW, _STARTED, _CANCELLED = "new", "started", "cancelled"  # how far the call got (see _start)


def _dt(t: Optional[float]) -> Optional[datetime]:
    return None if t is None else datetime.fromtimestamp(t)


class AsyncResult(Future):
    """The pending or finished result of one call on one or more engines."""

    def __init__(self, client: Client, fname: str = "unknown", single: bool = False) -> None:
        super().__init__()
        # Future's own Condition wraps an RLock: eight objects for the garbage collector to
        # track, per task (a burst of tiny tasks in a big notebook heap spent half its time
        # in collections).  No path takes a future's condition twice (``wait`` and
        # ``as_completed`` take each once), so a plain Lock serves, in four.
        self._condition = threading.Condition(threading.Lock())
        self._client = client
        self._ledger = client._ledger
        self._phase = _NEW
        self._fname = fname
        self._single = single
        self._records: List[TaskRecord] = []
        self._data: List[Dict[str, Any]] = []
        self._data_version = 0
        self._remaining = 0
        self._watchers: List[Callable[[Data], None]] = []
        self._segments: Tuple[Any, ...] = ()  # shared memory sent with the call; freed when done
        self._submitted = time.time()
        self._return_exceptions = False  # ipyparallel's map(return_exceptions=True)

    def __reduce__(self) -> Any:
        raise not_picklable(self, "its results arrive in this process only; send the value of get() instead")

    def __repr__(self) -> str:
        state = "finished" if self.done() else "pending"
        return f"<{type(self).__name__}({self._fname}): {state}>"

    # -- filled in by the client, the balancer and the ledger ----------------------------
    def _add_record(self, record: TaskRecord) -> None:
        self._records.append(record)
        self._data.append({})
        self._remaining += 1

    def _start(self) -> bool:
        """Mark the call running as its first task leaves for an engine; False if it was
        cancelled.  For load-balanced calls, under the balancer's lock."""
        if self._phase == _NEW:
            self._phase = _STARTED
            self.set_running_or_notify_cancel()
        return self._phase == _STARTED

    def _cancel_if_new(self) -> Tuple[bool, bool]:
        """(cancelled, by this call): only a call none of whose tasks has left can be.
        Under the balancer's lock; the canceller then calls `_notify_cancelled`."""
        if self._phase == _NEW:
            self._phase = _CANCELLED
            return True, True
        return self._phase == _CANCELLED, False

    def _notify_cancelled(self) -> None:
        Future.cancel(self)  # wakes result() callers, runs done-callbacks
        self.set_running_or_notify_cancel()  # notifies concurrent.futures.wait / as_completed

    def _record_done(self) -> bool:
        """Count a finished task; True for the last one.  Called under the ledger's lock."""
        self._remaining -= 1
        return self._remaining == 0

    def _apply_data(self, index: int, delta: Dict[str, Any]) -> None:
        """Merge a publication (collector thread): a new dict replaces the old one whole."""
        merged = dict(self._data[index])
        merged.update(delta)
        if chaos.ENABLED:
            chaos.pause()
        self._data[index] = merged
        self._data_version += 1
        self._notify_data()

    def _notify_data(self) -> None:
        if self._watchers:
            snapshot = self._snapshot()
            for callback in list(self._watchers):
                try:
                    callback(snapshot)
                except Exception:  # a watcher's bug must not break whoever is reading
                    _logger.exception("exception calling on_data callback for %r", self)

    def _finish(self) -> None:
        """Resolve the future once every record is done (ledger, outside its lock)."""
        if self.done():  # cancelled: its tasks were dropped
            return
        if self._segments:
            self._client._release_segments(self)
        if self._single:  # the common case, without the lists below
            record = self._records[0]
            if record.error is not None:
                self.set_exception(record.error)
            else:
                self.set_result(record.value)
            return
        errors = [r.error for r in self._records if r.error is not None]
        if errors:
            self.set_exception(CompositeError(f"one or more exceptions raised in: {self._fname}", errors))
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

    def _wait_until(self, predicate: Callable[[], bool], timeout: Optional[float]) -> bool:
        if not predicate():
            self._ledger.check_can_wait()
        return self._ledger.wait_until(predicate, timeout)

    def _wait_for_record(self, record: TaskRecord) -> None:
        self._wait_until(lambda: record.done, None)

    def _changed_since(self, version: int) -> bool:
        return self._data_version != version or self.done()

    def wait(self, timeout: Optional[float] = -1, return_when: Optional[str] = None) -> Any:
        """Wait up to `timeout` seconds (forever if None or negative); True if done.

        With `return_when` (``concurrent.futures.FIRST_COMPLETED``, ``FIRST_EXCEPTION``
        or ``ALL_COMPLETED``), return ``(done, pending)``: sets of one-task AsyncResults
        (see `split`), as ``concurrent.futures.wait`` does.
        """
        if return_when is not None:
            from .split import wait_split

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
        """Whether the call has finished."""
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
                if child._records[0].error is not None:
                    return child.get(0, return_exceptions=return_exceptions)
        if not self.wait(timeout):
            raise TimeoutError(f"result of {self._fname} not ready after {timeout} s")
        if (self._return_exceptions if return_exceptions is None else return_exceptions) and self._exception:
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
            raise TimeoutError(f"result of {self._fname} not ready after {timeout} s")
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

    def abort(self) -> None:
        """Drop this call's tasks that have not started; they fail with TaskAborted."""
        self._client.abort(self)

    def cancel(self) -> bool:
        """The Future API, without blocking.

        True (and cancelled, as ``concurrent.futures.wait`` and ``as_completed``
        see it) only if none of its tasks had left for an engine; otherwise its
        queued tasks fail with TaskAborted, running ones go on, and False.
        """
        if self.done():
            return self.cancelled()
        if self._client._cancel(self):
            return True
        self.abort()
        return False

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
            if record.error is not None and not self._return_exceptions:
                raise record.error
            yield record.value if record.error is None else record.error

    # -- published data ------------------------------------------------------------------
    def _snapshot(self) -> Data:
        copies = [dict(d) for d in self._data]
        return copies[0] if self._single else copies

    @property
    def data(self) -> Data:
        """The latest published data: a dict per engine (list), or one dict for one int target."""
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
            self._wait_until(functools.partial(self._changed_since, seen), remaining)
            if self._data_version != seen:
                seen = self._data_version
                yield self._snapshot()
            elif self.done():
                return
            elif deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"data of {self._fname} did not change in {timeout} s")

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

    # -- metadata ------------------------------------------------------------------------
    def _per_task(self, values: List[Any]) -> Any:
        return values[0] if self._single else values

    @property
    def msg_ids(self) -> List[str]:
        return [r.msg_id for r in self._records]

    @property
    def engine_id(self) -> Union[int, List[int]]:
        return self._per_task([r.engine_id for r in self._records])

    @property
    def stdout(self) -> Union[str, List[str]]:
        """What the tasks printed (a str per engine, one str for an int target): it grows while
        they run (sent every ~30 ms, see ``output``) and is all there once the result is ready.
        The full text is kept, as in ipyparallel: its memory is that of the text."""
        return self._per_task([r.stdout for r in self._records])

    @property
    def stderr(self) -> Union[str, List[str]]:
        """What the tasks wrote to ``sys.stderr``, as `stdout`."""
        return self._per_task([r.stderr for r in self._records])

    @property
    def metadata(self) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
        """Per task: engine_id, msg_id, submitted, started, completed, received, status, ..."""
        metas = [
            {
                "msg_id": r.msg_id,
                "engine_id": r.engine_id,
                "submitted": _dt(r.submitted),
                "started": _dt(r.started),
                "completed": _dt(r.completed),
                "received": _dt(r.received),
                "status": r.status,
                "error": r.error,
                "stdout": r.stdout,
                "stderr": r.stderr,
                "data": dict(d),
                "progress": r.progress,
                "data_errors": list(r.data_errors),
            }
            for r, d in zip(self._records, self._data)
        ]
        return self._per_task(metas)

    @property
    def sent(self) -> bool:
        return bool(self._records)

    @property
    def submitted(self) -> datetime:
        return datetime.fromtimestamp(self._submitted)

    @property
    def elapsed(self) -> float:
        """Seconds from submission to the last completion (or to now, while pending)."""
        if self.ready():
            ends = [r.received or r.completed for r in self._records]
            end = max((e for e in ends if e is not None), default=time.time())
        else:
            end = time.time()
        return end - self._submitted

    @property
    def wall_time(self) -> float:
        """Seconds from the first start to the last completion on the engines.

        Raises ``TimeoutError`` before the call has finished, as ipyparallel does.
        """
        if not self.ready():
            raise TimeoutError("Result not ready.")
        starts = [r.started for r in self._records if r.started is not None]
        ends = [r.completed for r in self._records if r.completed is not None]
        return (max(ends) - min(starts)) if starts and ends else 0.0

    @property
    def serial_time(self) -> float:
        """Sum of the tasks' compute times: what it would take on one engine.

        Raises ``TimeoutError`` before the call has finished, as ipyparallel does.
        """
        if not self.ready():
            raise TimeoutError("Result not ready.")
        return sum(
            (r.completed - r.started) for r in self._records if r.started is not None and r.completed is not None
        )

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
        if groupby not in ("type", "engine", "order"):
            raise ValueError(f"groupby must be one of 'type', 'engine', 'order', not {groupby!r}")
        self.wait()

        def stream(r: TaskRecord, name: str, file: Any) -> None:
            text = getattr(r, name)
            if not text or result_only:
                return
            label = "" if self._single else f"[{name}:{r.engine_id}]"
            if label and "\n" in text.rstrip():
                label += "\n"
            elif label:
                label += " "
            print(label + text, end="" if text.endswith("\n") else "\n", file=file)

        def result(r: TaskRecord) -> None:
            out = getattr(r.value, "execute_result", None) if r.done else None
            if out is not None:
                count = out.get("execution_count", 0)
                print(f"Out[{r.engine_id}:{count}]: {out['data'].get('text/plain', '')}")

        if groupby == "engine":
            for r in self._records:
                stream(r, "stdout", sys.stdout)
                stream(r, "stderr", sys.stderr)
                result(r)
            return
        for r in self._records:
            stream(r, "stdout", sys.stdout)
        for r in self._records:
            stream(r, "stderr", sys.stderr)
        for r in self._records:
            result(r)

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
        from .split import wait_split

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            done, pending = wait_split(self, interval, return_when)
            if not pending or (return_when == "FIRST_COMPLETED" and done):
                return
            if return_when == "FIRST_EXCEPTION" and any(p._exception is not None for p in done):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{self._fname} not done after {timeout} s")

    # -- ipyparallel's metadata access and extras -----------------------------------------
    _METADATA_KEYS = frozenset(
        {"msg_id", "engine_id", "submitted", "started", "completed", "received", "status", "error", "stdout",
         "stderr", "data", "progress", "execute_result"}
    )  # fmt: skip

    def __getitem__(self, key: Union[int, slice, str]) -> Any:
        """``ar['completed']``: a metadata field (a list for many tasks); ``ar[0]``, ``ar[1:]``: results.

        Results need the call to be finished (``TimeoutError`` otherwise); metadata does not.
        """
        if isinstance(key, str):
            if key not in self._METADATA_KEYS:
                raise KeyError(key)
            if key == "execute_result":
                return self.execute_result
            metadata = self.metadata
            return metadata[key] if isinstance(metadata, dict) else [md[key] for md in metadata]
        if isinstance(key, (int, slice)):
            if not self.ready():
                raise TimeoutError("Result not ready.")
            values = self._with_exceptions()
            if self._single:
                values = [values]
            part = values[key]
            for value in part if isinstance(key, slice) else [part]:
                if isinstance(value, BaseException):
                    raise value
            return part
        raise TypeError(f"Invalid key type {type(key)!r}, must be 'int', 'slice', or 'str'")

    def __getattr__(self, key: str) -> Any:
        """Metadata fields as attributes: ``ar.completed``, ``ar.started``, ``ar.status``..."""
        if key.startswith("_") or key not in AsyncResult._METADATA_KEYS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")
        return self[key]

    def __dir__(self) -> List[str]:
        return sorted(set(super().__dir__()) | self._METADATA_KEYS)

    @property
    def execute_result(self) -> Any:
        """``execute(code, silent=False)``: each engine's ``{'data': {'text/plain': ...}}`` of the
        last expression (None elsewhere); one value for an int target."""
        return self._per_task([getattr(r.value, "execute_result", None) if r.done else None for r in self._records])

    def wait_for_send(self, timeout: Optional[float] = -1) -> None:
        """ipyparallel waits for ZeroMQ to copy the message; a localpar call owns its own copy once
        submitted (pickled, or in shared memory), so there is nothing left to wait for."""

    def split(self) -> tuple:
        """One AsyncResult per task (itself when it has one), e.g. for ``concurrent.futures.wait``."""
        from .split import split

        return split(self)

    @classmethod
    def join(cls, *async_results: AsyncResult) -> AsyncResult:
        """The inverse of `split`: one AsyncResult over the tasks of several."""
        from .split import join

        return join(*async_results)


class AsyncMapResult(AsyncResult):
    """The result of a map: a flat list in input order, iterable as results arrive."""

    def __init__(self, client: Client, fname: str, chunks: List[int]) -> None:
        super().__init__(client, fname, single=False)
        self._chunks = chunks  # how many items each task computed

    def _finish(self) -> None:
        if self.done():
            return
        errors = [r.error for r in self._records if r.error is not None]
        if errors:
            super()._finish()
            return
        self._client._release_segments(self)
        flat: List[Any] = []
        for r in self._records:
            flat.extend(r.value)
        self.set_result(flat)

    def __iter__(self) -> Iterator[Any]:
        for record in self._records:
            self._wait_for_record(record)
            if record.error is not None:
                if not self._return_exceptions:
                    raise record.error
                yield record.error
                continue
            yield from record.value

    def _with_exceptions(self) -> Any:
        """The flat results; a failed task's error stands for its chunk (as ipyparallel does)."""
        flat: List[Any] = []
        for r in self._records:
            if r.error is not None:
                flat.append(r.error)
            else:
                flat.extend(r.value)
        return flat

    def __len__(self) -> int:
        return sum(self._chunks)

    @property
    def progress(self) -> int:
        """How many items are computed (finished tasks' chunks), as ipyparallel counts."""
        return sum(n for r, n in zip(self._records, self._chunks) if r.done)
