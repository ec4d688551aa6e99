"""A joblib backend on a localpar view: ``view.register_joblib_backend('localpar')`` then
``joblib.Parallel(backend='localpar')`` (or ``with joblib.parallel_backend('localpar'):``)
runs joblib's batches as tasks on the view, so scikit-learn's ``n_jobs`` work uses the cluster.

joblib's completion callbacks (which dispatch the next batches) run on a thread of the
backend's own, never inside whichever thread completed the task; once joblib has stopped
(an error, a timeout, a dropped generator), the callbacks of tasks still ending are dropped.
A batch that raises gives joblib the task's own exception (a ValueError stays a
ValueError, the engine's traceback as its cause), as joblib's own backends do.

``localpar.register_joblib_backend()`` (ipyparallel's module-level form) registers a backend
with no view of its own: as ipyparallel's uses the running default cluster, or starts one it
owns, each ``Parallel`` uses a load-balanced view of the newest open `Client` of this process,
or starts a ``Client()`` that it closes when joblib terminates the backend.

``abort_everything`` (joblib's call when a batch fails or times out) aborts only the tasks
this backend submitted and that have not ended; other work on the same view or client goes on.
The backend keeps its outstanding results under its own lock: added by ``submit``, removed by
their done-callback (which the collector runs).
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from joblib.parallel import AutoBatchingMixin, ParallelBackendBase, register_parallel_backend

from ..client.registry import latest_open_client
from ..errors import RemoteTraceback
from ..wire.ops import EngineOp, KeptException

if TYPE_CHECKING:
    from ..client.interface import TaskViewAPI as View


class LocalparBackend(AutoBatchingMixin, ParallelBackendBase):
    """Runs joblib batches on a localpar view; ``len(view)`` at a time."""

    supports_retrieve_callback = True
    supports_timeout = True

    def __init__(
        self, view: Optional[View] = None, new_client: Optional[Callable[[], Any]] = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if view is None and new_client is None:
            raise TypeError("LocalparBackend needs a view, or a new_client factory for the default client")
        self._new_client = new_client
        self._owns_client = view is None and latest_open_client() is None
        self._view = view if view is not None else self._default_view()
        self._callbacks: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._lock = threading.Lock()  # guards _outstanding
        self._outstanding: Dict[int, Any] = {}  # id(ar) -> ar, for the tasks of ours not yet done

    def effective_n_jobs(self, n_jobs: Any) -> int:
        return len(self._view)

    def configure(self, n_jobs: int = 1, parallel: Any = None, **backend_kwargs: Any) -> int:
        if self._owns_client and self._view.client.closed:  # a Parallel called again after terminate()
            self._view = self._default_view()
        self.parallel = parallel
        self._callbacks = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="localpar-joblib")
        return self.effective_n_jobs(n_jobs)

    def submit(self, func: Callable[[], Any], callback: Optional[Callable[[Any], Any]] = None) -> Any:
        ar = self._view.apply_async(EngineOp("call_keeping_exception"), func)
        with self._lock:
            self._outstanding[id(ar)] = ar
        ar.add_done_callback(self._forget)
        if callback is not None:
            callbacks = self._callbacks
            assert callbacks is not None, "configure() runs before submit()"
            ar.add_done_callback(lambda f: _hand_over(callbacks, callback, f))
        return ar

    apply_async = submit

    def _default_view(self) -> Any:
        """A load-balanced view of the newest open Client of this process, or of a new one."""
        client = latest_open_client()
        if client is None:
            assert self._new_client is not None
            client = self._new_client()
        return client.load_balanced_view()

    def retrieve_result_callback(self, out: Any) -> Any:
        return _raise_kept(out.get())

    def retrieve_result(self, out: Any, timeout: Optional[float] = None) -> Any:
        return _raise_kept(out.get(timeout=-1 if timeout is None else timeout))

    def _forget(self, ar: Any) -> None:
        with self._lock:
            self._outstanding.pop(id(ar), None)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Abort this backend's own tasks not yet started (never the view's other work)."""
        with self._lock:
            mine = list(self._outstanding.values())
        if mine:
            self._view.abort(mine)

    def terminate(self) -> None:
        if self._callbacks is not None:
            self._callbacks.shutdown(wait=False)
            self._callbacks = None
        if self._owns_client:  # as ipyparallel closes the client (and cluster) it started
            self._view.client.close()


def register_default(new_client: Callable[[], Any], name: str = "ipyparallel", make_default: bool = False) -> None:
    """``localpar.register_joblib_backend()``: the backend on the default client (above);
    `new_client` starts one when none is open."""
    register_parallel_backend(
        name, lambda **kwargs: LocalparBackend(new_client=new_client, **kwargs), make_default=make_default
    )


def _hand_over(callbacks: concurrent.futures.ThreadPoolExecutor, callback: Callable[[Any], Any], f: Any) -> None:
    """Run joblib's callback for `f` on the backend's thread, unless joblib has stopped (terminate)."""
    try:
        callbacks.submit(callback, f)
    except RuntimeError:  # shut down: joblib no longer wants this result
        pass


def _raise_kept(value: Any) -> Any:
    """A batch's value, or raise the exception it raised on the engine."""
    if isinstance(value, KeptException):
        raise value.exception from RemoteTraceback(value.traceback)
    return value


def register(view: View, name: str = "ipyparallel", make_default: bool = False) -> None:
    """Register `view` as joblib backend `name` (ipyparallel's default name, so notebooks move as they are)."""
    register_parallel_backend(name, lambda **kwargs: LocalparBackend(view=view, **kwargs), make_default=make_default)
