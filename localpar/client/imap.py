"""``view.imap``: a lazy map over any iterable, with at most `max_outstanding` tasks in flight.

As ipyparallel 9.2's ``LoadBalancedView.imap``: the input is consumed as tasks finish, not
up front, so an infinite generator works; each finished task lets the next input be
submitted at once (results the caller has not taken yet wait in the client, as in
ipyparallel); ``ordered=False`` yields results as they finish; ``cancel()`` stops
consuming the input, and what was already submitted is still yielded.

Who does what (one condition, `_Stream.cond`, guards every field of the stream):

- the *feeder* thread (``localpar-imap-<cluster>``), one per imap, alone pulls from the
  input and submits.  It waits on `cond` while `max_outstanding` tasks are in flight, and
  never holds `cond` while it runs the user's iterator or submits.
- each task's done-callback (run by the collector thread, or by the feeder when the task
  was already done) counts the task off `in_flight` and notifies `cond`: a few operations,
  never blocking.
- the *reader* (the thread iterating) waits on `cond` for the next finished result.

Every wait is on `cond`, and every change that can end it (a task done, a task submitted,
the input exhausted or failed, ``cancel()``) notifies it under the lock, so no wake is
lost.  The feeder ends when the input is exhausted, on an error, on ``cancel()``, when the
iterator is garbage-collected, or when the client closes (its tasks fail, and the next
submission is refused).
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterator, List, Optional

if TYPE_CHECKING:
    from .asyncresult import AsyncResult


class _InputError:
    """Stands in the stream for an exception raised by the input iterator."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def done(self) -> bool:
        return True


class _Stream:
    """The state shared by the feeder, the done-callbacks and the reader (see the module docstring)."""

    def __init__(
        self,
        submit: Callable[..., AsyncResult],
        args: Iterator[tuple],
        ordered: bool,
        limit: int,
        check_can_wait: Callable[[], None],
    ) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.check_can_wait = check_can_wait  # refuses to block the collector thread
        self.submit = submit
        self.args = args
        self.ordered = ordered
        self.limit = limit  # 0: no limit
        self.pending: Dict[int, Any] = {}  # submitted, not yet yielded, in submission order
        self.finished: Deque[Any] = deque()  # unordered: finished, not yet yielded, in finishing order
        self.in_flight = 0
        self.input_done = False  # the feeder submits nothing more
        self.cancelled = False
        self.exhausted = False  # the reader has seen the end (or raised)

    # -- the feeder ------------------------------------------------------------------------
    def feed_one(self, first: bool = False) -> bool:
        """Wait for room, pull one input and submit it; False when the feeder is done.
        With `first`, an error of the submission itself is raised (imap() raises it)."""
        with self.cond:
            while self.limit and self.in_flight >= self.limit and not self.cancelled:
                self.cond.wait()
            if self.cancelled:
                return False
        try:
            args = next(self.args)
        except StopIteration:
            return False
        except BaseException as exc:  # the input failed: the reader raises it in its place
            self.add(_InputError(exc))
            return False
        try:
            ar = self.submit(*args)
        except BaseException as exc:
            if first:
                raise
            self.add(_InputError(exc))
            return False
        self.add(ar)
        ar.add_done_callback(self.task_done)
        return True

    def add(self, entry: Any) -> None:
        with self.cond:
            if isinstance(entry, _InputError):
                if not self.ordered:
                    self.finished.append(entry)
            else:
                self.in_flight += 1
            self.pending[id(entry)] = entry
            self.cond.notify_all()

    def feed(self) -> None:
        """The feeder thread's body."""
        try:
            while self.feed_one():
                pass
        finally:
            self.end_input()

    def end_input(self) -> None:
        with self.cond:
            self.input_done = True
            self.cond.notify_all()

    # -- the done-callbacks ----------------------------------------------------------------
    def task_done(self, ar: Any) -> None:
        with self.cond:
            self.in_flight -= 1
            if not self.ordered and id(ar) in self.pending:
                self.finished.append(ar)
            self.cond.notify_all()

    # -- the reader ------------------------------------------------------------------------
    def take(self, timeout: Optional[float]) -> Any:
        """The next finished entry, in order or as finished; None at the end."""
        with self.cond:
            if not self._can_take():
                self.check_can_wait()
            ok = self.cond.wait_for(self._can_take, timeout)
            if not ok:
                raise TimeoutError(f"no imap result within {timeout} s")
            if self.ordered:
                if not self.pending:
                    return None
                key = next(iter(self.pending))
                return self.pending.pop(key)
            if not self.finished:
                return None
            entry = self.finished.popleft()
            self.pending.pop(id(entry), None)
            return entry

    def _can_take(self) -> bool:
        if self.ordered:
            if self.pending:
                return bool(next(iter(self.pending.values())).done())
        elif self.finished:
            return True
        return not self.pending and (self.input_done or self.cancelled)

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify_all()

    def outstanding(self) -> List[Any]:
        """The submitted results not yet yielded."""
        with self.cond:
            return [e for e in self.pending.values() if not isinstance(e, _InputError)]

    def wait_submitted(self, timeout: Optional[float] = None) -> bool:
        """Wait until the feeder has stopped (the input exhausted or failed, or cancelled and
        the input it was pulling, if any, submitted)."""
        with self.cond:
            return self.cond.wait_for(lambda: self.input_done, timeout)


class LazyMapIterator:
    """What ``imap`` returns (ipyparallel's ``LazyMapIterator``): iterate it for the results;
    ``cancel()`` stops consuming the input (what was submitted is still yielded)."""

    def __init__(self, stream: _Stream, return_exceptions: bool) -> None:
        self._stream = stream
        self._return_exceptions = return_exceptions
        self._finalizer = weakref.finalize(self, stream.cancel)  # an abandoned imap stops feeding

    def __iter__(self) -> LazyMapIterator:
        return self

    def __next__(self) -> Any:
        return self.next(None)

    def next(self, timeout: Optional[float] = None) -> Any:
        """The next result, waiting at most `timeout` seconds (``TimeoutError`` after)."""
        stream = self._stream
        if stream.exhausted:
            raise StopIteration
        entry = stream.take(timeout)
        if entry is None:
            stream.exhausted = True
            raise StopIteration
        if isinstance(entry, _InputError):
            self._stop()
            raise entry.error
        try:
            return entry.get(return_exceptions=self._return_exceptions)
        except BaseException:
            self._stop()  # as ipyparallel: the iteration ends at the first error it raises
            raise

    def _stop(self) -> None:
        self._stream.exhausted = True
        self._stream.cancel()

    def cancel(self) -> None:
        """Stop consuming the input; results already submitted are still yielded."""
        self._stream.cancel()

    # for view.executor's shutdown
    def wait_submitted(self, timeout: Optional[float] = None) -> bool:
        """Wait until no more input will be submitted (exhausted, failed or cancelled)."""
        return self._stream.wait_submitted(timeout)

    def outstanding(self) -> List[AsyncResult]:
        """The results submitted and not yet yielded."""
        return self._stream.outstanding()

    @property
    def in_flight(self) -> int:
        """Tasks submitted and not finished."""
        with self._stream.cond:
            return self._stream.in_flight


def imap(
    submit: Callable[..., AsyncResult],
    sequences: tuple,
    ordered: bool,
    max_outstanding: int,
    return_exceptions: bool,
    thread_name: str,
    check_can_wait: Callable[[], None],
) -> LazyMapIterator:
    """Start a lazy map: ``submit(*args)`` for each zipped input, at most `max_outstanding`
    in flight (0: no limit).  The first input is submitted before this returns, so an error
    of the submission itself (an unpicklable function) is raised here, as ipyparallel does."""
    stream = _Stream(submit, iter(zip(*sequences)), ordered, max_outstanding, check_can_wait)
    iterator = LazyMapIterator(stream, return_exceptions)
    if not stream.feed_one(first=True):
        stream.end_input()
        return iterator
    thread = threading.Thread(target=stream.feed, name=thread_name, daemon=True)
    thread.start()
    return iterator
