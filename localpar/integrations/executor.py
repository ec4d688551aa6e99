"""``view.executor``: a ``concurrent.futures.Executor`` over a view, as in ipyparallel.

``submit`` is ``view.apply_async`` (an `AsyncResult` is a ``Future``); ``map`` is
``view.imap`` as in ipyparallel: on a load-balanced view one task per item, the input
consumed as tasks finish (one in flight per engine), so it works over an infinite iterable,
and results are yielded in order as they arrive; ``timeout`` counts from the call to
``map``, as ``concurrent.futures`` has it (ipyparallel ignores it); a ``chunksize`` above 1
maps in chunks with ``map_async``.  ``shutdown(wait=True)`` waits until every map has
submitted its input, then for what was submitted through the executor; the engines keep
running (they belong to the Client).  ``shutdown(cancel_futures=True)`` cancels every call
not started, whether it waits in the client or at an engine, as ``ProcessPoolExecutor``
does (see ``AsyncResult.cancel``).
"""

from __future__ import annotations

import concurrent.futures
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional

from ..client.imap import LazyMapIterator

if TYPE_CHECKING:
    from ..client.asyncresult import AsyncResult
    from ..client.interface import TaskViewAPI as View


class MapResultIterator:
    """What ``executor.map`` returns for a DirectView or a chunked map: the results of one
    ``map_async``, in input order, each as soon as it is ready."""

    def __init__(self, ar: AsyncResult, timeout: Optional[float] = None) -> None:
        self.ar = ar
        self._timeout = timeout
        self._it: Optional[Iterator[Any]] = None

    def __iter__(self) -> MapResultIterator:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            if self._timeout is not None and not self.ar.wait(self._timeout):
                raise TimeoutError(f"map results not ready after {self._timeout} s")
            self._it = iter(self.ar)
        return next(self._it)

    def cancel(self) -> None:
        """Abort the tasks of this map that have not started."""
        self.ar.abort()


class TimedMapIterator:
    """``executor.map(..., timeout=t)`` over a lazy imap: each result waited for until `t`
    seconds after the call to ``map``; then, as ``concurrent.futures``, ``TimeoutError``, no
    more input is consumed and the tasks not started are cancelled."""

    def __init__(self, it: Any, timeout: Optional[float]) -> None:
        self.it = it
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def __iter__(self) -> TimedMapIterator:
        return self

    def __next__(self) -> Any:
        if self._deadline is None:
            return next(self.it)
        try:
            return self.it.next(max(0.0, self._deadline - time.monotonic()))
        except TimeoutError:  # as concurrent.futures: the map ends, what has not started is cancelled
            self.it.cancel()
            for ar in self.it.outstanding():
                ar.cancel()
            raise

    def cancel(self) -> None:
        """Stop consuming the input (what was submitted still runs and is yielded)."""
        self.it.cancel()


__all__ = ["LazyMapIterator", "MapResultIterator", "TimedMapIterator", "ViewExecutor"]


class ViewExecutor(concurrent.futures.Executor):
    """A PEP 3148 Executor on a localpar view."""

    def __init__(self, view: View) -> None:
        self.view = view
        self._max_workers = len(view)
        self._submitted: weakref.WeakSet[AsyncResult] = weakref.WeakSet()
        self._maps: weakref.WeakSet[Any] = weakref.WeakSet()  # lazy imaps still feeding
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncResult:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        ar = self.view.apply_async(fn, *args, **kwargs)
        self._submitted.add(ar)
        return ar

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: Optional[float] = None, chunksize: int = 1
    ) -> Any:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if chunksize != 1:
            ar = self.view.map_async(fn, *[list(it) for it in iterables], chunksize=chunksize)
            self._submitted.add(ar)
            return MapResultIterator(ar, timeout)
        if not self.view.lazy_imap:  # a DirectView's imap is iter(map_async(...)), as in ipyparallel
            ar = self.view.map_async(fn, *[list(i) for i in iterables])
            self._submitted.add(ar)
            return MapResultIterator(ar, timeout)
        it = self.view.imap(fn, *iterables)
        self._maps.add(it)
        return TimedMapIterator(it, timeout) if timeout is not None else it

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; with `wait`, wait for what was submitted. Engines stay up."""
        self._shutdown = True
        maps = list(self._maps)
        if cancel_futures:
            for it in maps:
                it.cancel()
        if wait:
            for it in maps:  # as ipyparallel: wait for each map to submit its input
                it.wait_submitted()
        pending = list(self._submitted) + [ar for it in maps for ar in it.outstanding()]
        if cancel_futures:  # every call not started, as ProcessPoolExecutor: queued here or at an engine
            from ..client.asyncresult import cancel_sent

            client = self.view.client
            cancel_sent([ar for ar in pending if not ar.done() and not client.cancel_unsent(ar)])
        if wait and pending:
            self.view.client.wait(pending)
