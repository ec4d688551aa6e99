"""``view.executor``: a ``concurrent.futures.Executor`` over a view, as in ipyparallel.

``submit`` is ``view.apply_async`` (an `AsyncResult` is a ``Future``), ``map`` yields
results in order as they arrive, ``shutdown(wait=True)`` waits for what was submitted
through the executor; the engines keep running (they belong to the Client).
``shutdown(cancel_futures=True)`` cancels every call not started, whether it waits in the
client or at an engine, as ``ProcessPoolExecutor`` does (see ``AsyncResult.cancel``).
"""

from __future__ import annotations

import concurrent.futures
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional

if TYPE_CHECKING:
    from ..client.asyncresult import AsyncResult
    from ..client.interface import TaskViewAPI as View


class LazyMapIterator:
    """The iterator ``executor.map`` returns: results in input order, each as soon as it is ready."""

    def __init__(self, ar: AsyncResult, timeout: Optional[float] = None) -> None:
        self.ar = ar
        self._timeout = timeout
        self._it: Optional[Iterator[Any]] = None

    def __iter__(self) -> LazyMapIterator:
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


class ViewExecutor(concurrent.futures.Executor):
    """A PEP 3148 Executor on a localpar view."""

    def __init__(self, view: View) -> None:
        self.view = view
        self._max_workers = len(view)
        self._submitted: weakref.WeakSet[AsyncResult] = weakref.WeakSet()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncResult:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        ar = self.view.apply_async(fn, *args, **kwargs)
        self._submitted.add(ar)
        return ar

    def map(
        self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: Optional[float] = None, chunksize: int = 1
    ) -> LazyMapIterator:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        options = {"chunksize": chunksize} if chunksize != 1 else {}
        ar = self.view.map_async(fn, *[list(it) for it in iterables], **options)
        self._submitted.add(ar)
        return LazyMapIterator(ar, timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; with `wait`, wait for what was submitted. Engines stay up."""
        self._shutdown = True
        pending = list(self._submitted)
        if cancel_futures:  # every call not started, as ProcessPoolExecutor: queued here or at an engine
            from ..client.asyncresult import cancel_sent

            client = self.view.client
            cancel_sent([ar for ar in pending if not ar.done() and not client.cancel_unsent(ar)])
        if wait and pending:
            self.view.client.wait(pending)
